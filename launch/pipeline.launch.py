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
Launch edge and host together on one machine (the whole pipeline).

ros2 launch edge_denoise_ros pipeline.launch.py camera_topic:=/camera/image_raw
ros2 launch edge_denoise_ros pipeline.launch.py bundle:=scenes   # the realistic profile
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    """Include edge.launch.py and host.launch.py with shared arguments."""
    share = FindPackageShare('edge_denoise_ros')
    namespace = LaunchConfiguration('namespace')
    device = LaunchConfiguration('device')
    edge = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch', 'edge.launch.py'])),
        launch_arguments={'namespace': namespace, 'device': device,
                          'camera_topic': LaunchConfiguration('camera_topic'),
                          'features_topic': LaunchConfiguration('features_topic'),
                          'params_file': LaunchConfiguration('edge_params_file'),
                          'composed': LaunchConfiguration('composed'),
                          'bundle': LaunchConfiguration('bundle'),
                          'fastdds_profile': LaunchConfiguration('fastdds_profile')}.items())
    host = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch', 'host.launch.py'])),
        launch_arguments={'namespace': namespace, 'device': device,
                          'params_file': LaunchConfiguration('host_params_file'),
                          'features_topic': LaunchConfiguration('features_topic'),
                          'bundle': LaunchConfiguration('bundle'),
                          'fastdds_profile': LaunchConfiguration('fastdds_profile')}.items())
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of every node and topic'),
        DeclareLaunchArgument('camera_topic', default_value='image_raw',
                              description='camera topic (sensor_msgs/Image)'),
        DeclareLaunchArgument('features_topic', default_value='features',
                              description='topic of the encoded features, edge to host (both '
                                          'are remapped to it)'),
        DeclareLaunchArgument('edge_params_file', default_value=PathJoinSubstitution(
            [share, 'config', 'edge.yaml']), description='YAML parameters of the edge'),
        DeclareLaunchArgument('host_params_file', default_value=PathJoinSubstitution(
            [share, 'config', 'host.yaml']), description='YAML parameters of the host'),
        DeclareLaunchArgument('device', default_value='cpu',
                              description='torch device of edge and host: cpu, cuda, cuda:N'),
        DeclareLaunchArgument('composed', default_value='true',
                              description='true: edge_process; false: edge_node'),
        DeclareLaunchArgument('fastdds_profile', default_value=PathJoinSubstitution(
            [share, 'config', 'fastdds_large_data.xml']),
            description='Fast DDS profile of every node (FASTDDS_DEFAULT_PROFILES_FILE); the '
                        'camera driver needs the same'),
        DeclareLaunchArgument('bundle', default_value='',
                              description='bundle of edge and host: a shipped one by name '
                                          '(scenes) or a folder. "" = the params files\''),
        edge,
        host,
    ])
