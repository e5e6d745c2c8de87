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
Launch the host side: ``host_node`` (features -> classification, diagnostics).

ros2 launch edge_denoise_ros host.launch.py namespace:=robot1 device:=cuda
ros2 launch edge_denoise_ros host.launch.py name:=host_a robots:="[robot1, robot2]"
ros2 launch edge_denoise_ros host.launch.py bundle:=scenes   # the edge's bundle
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    """Declare the arguments and the host node."""
    share = FindPackageShare('edge_denoise_ros')

    def host(context):
        """Return the host node; bundle:='' leaves the params file's bundle (or none)."""
        overrides = {'device': LaunchConfiguration('device'),
                     'robots': LaunchConfiguration('robots')}
        bundle = LaunchConfiguration('bundle').perform(context)
        if bundle:
            overrides['bundle'] = bundle
        return [Node(package='edge_denoise_ros', executable='host_node',
                     name=LaunchConfiguration('name'), namespace=LaunchConfiguration('namespace'),
                     output='screen', parameters=[LaunchConfiguration('params_file'), overrides],
                     remappings=[('features', LaunchConfiguration('features_topic'))])]

    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the host node and its topics '
                                          '(the edge\'s, to pair them)'),
        DeclareLaunchArgument('features_topic', default_value='features',
                              description='topic of the edge\'s encoded features'),
        DeclareLaunchArgument('params_file', default_value=PathJoinSubstitution(
            [share, 'config', 'host.yaml']),
            description='YAML parameters of the host node'),
        DeclareLaunchArgument('fastdds_profile', default_value=PathJoinSubstitution(
            [share, 'config', 'fastdds_large_data.xml']),
            description='Fast DDS profile of the host node (FASTDDS_DEFAULT_PROFILES_FILE)'),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE',
                               LaunchConfiguration('fastdds_profile')),
        DeclareLaunchArgument('device', default_value='cpu',
                              description='torch device of the host model: cpu, cuda, cuda:N'),
        DeclareLaunchArgument('name', default_value='host_node',
                              description='node name: one per host of a fleet'),
        DeclareLaunchArgument('robots', default_value="['']",
                              description='robots this host serves: their namespaces as a YAML '
                                          'list ([\'\'] = the host\'s own namespace, one robot)'),
        DeclareLaunchArgument('bundle', default_value='',
                              description='the edge\'s bundle: a shipped one by name (scenes) '
                                          'or a folder. "" = the params file\'s'),
        OpaqueFunction(function=host),
    ])
