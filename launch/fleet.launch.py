# Copyright 2026 The edge_denoise_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
A fleet shared by two hosts: 4 robots (robot1..robot4), each host serving its own list.

ros2 launch edge_denoise_ros fleet.launch.py
ros2 launch edge_denoise_ros fleet.launch.py host_a_robots:="[robot1]" \
    host_b_robots:="[robot2, robot3, robot4]" edges:=false

Each robot's edge (edge.launch.py) runs in its namespace (``/robotN/image_raw`` in,
``/robotN/features`` out); host_a and host_b (host.launch.py) each serve the robots of
their launch argument and publish each robot's results on ``/robotN/classification``.
The lists must not overlap and should cover the fleet: DDS carries everything, there is
no broker, and a robot named by no host is not served. On real machines run
``edge.launch.py namespace:=robotN`` on each robot and
``host.launch.py name:=host_a robots:="[robot1, robot2]"`` on each host.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

ROBOTS = ('robot1', 'robot2', 'robot3', 'robot4')
HOSTS = ('host_a', 'host_b')


def generate_launch_description():
    """Declare the arguments, two hosts with their robot lists and the four robots' edges."""
    share = FindPackageShare('edge_denoise_ros')
    namespace = LaunchConfiguration('namespace')
    device = LaunchConfiguration('device')

    def include(name: str, arguments: dict) -> IncludeLaunchDescription:
        return IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch', name])),
            launch_arguments=arguments.items())

    hosts = [
        GroupAction([include('host.launch.py', {
            'name': name, 'robots': LaunchConfiguration(f'{name}_robots'),
            'namespace': namespace, 'device': device, 'bundle': LaunchConfiguration('bundle'),
            'params_file': LaunchConfiguration('host_params_file')})])
        for name in HOSTS
    ]
    edges = [
        GroupAction([include('edge.launch.py', {
            'namespace': [namespace, '/', robot], 'device': device,
            'bundle': LaunchConfiguration('bundle'),
            'camera_topic': LaunchConfiguration('camera_topic'),
            'params_file': LaunchConfiguration('edge_params_file')})],
            condition=IfCondition(LaunchConfiguration('edges')))
        for robot in ROBOTS
    ]
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the whole fleet (robots and hosts)'),
        DeclareLaunchArgument('host_a_robots', default_value='[robot1, robot2]',
                              description='robots host_a serves (their namespaces, YAML list)'),
        DeclareLaunchArgument('host_b_robots', default_value='[robot3, robot4]',
                              description='robots host_b serves; must not overlap host_a\'s'),
        DeclareLaunchArgument('edges', default_value='true',
                              description='also start the four robots\' edges here (false '
                                          'when the robots run their own)'),
        DeclareLaunchArgument('camera_topic', default_value='image_raw',
                              description='camera topic of each robot, relative to its '
                                          'namespace (sensor_msgs/Image)'),
        DeclareLaunchArgument('host_params_file', default_value=PathJoinSubstitution(
            [share, 'config', 'host.yaml']), description='YAML parameters of both hosts'),
        DeclareLaunchArgument('edge_params_file', default_value=PathJoinSubstitution(
            [share, 'config', 'edge.yaml']), description='YAML parameters of the edges'),
        DeclareLaunchArgument('device', default_value='cpu',
                              description='torch device of hosts and edges: cpu, cuda, cuda:N'),
        DeclareLaunchArgument('bundle', default_value='',
                              description='bundle of every edge and host: a shipped one by '
                                          'name (scenes) or a folder. "" = the params files\''),
        *hosts,
        *edges,
    ])
