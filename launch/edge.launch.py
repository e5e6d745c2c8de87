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
Launch the edge side: ``edge_process`` (denoiser + target composed) or ``edge_node``.

ros2 launch edge_denoise_ros edge.launch.py camera_topic:=/camera/image_raw device:=cuda
ros2 launch edge_denoise_ros edge.launch.py bundle:=scenes   # a shipped bundle, or a folder
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    """Declare the arguments and the edge node(s)."""
    namespace = LaunchConfiguration('namespace')
    camera = LaunchConfiguration('camera_topic')
    params = LaunchConfiguration('params_file')
    device = LaunchConfiguration('device')
    composed = LaunchConfiguration('composed')
    share = FindPackageShare('edge_denoise_ros')
    remappings = [('image_raw', camera), ('image_raw/compressed', [camera, '/compressed']),
                  ('features', LaunchConfiguration('features_topic'))]

    def nodes(context):
        # bundle:='' leaves the params file's bundle (or none); a name or folder overrides it.
        overrides = {'device': device}
        bundle = LaunchConfiguration('bundle').perform(context)
        if bundle:
            overrides['bundle'] = bundle
        common = dict(package='edge_denoise_ros', namespace=namespace, output='screen',
                      parameters=[params, overrides], remappings=remappings)
        # No name= here: it would rename both nodes of the process (denoiser, target).
        return [Node(executable='edge_process', condition=IfCondition(composed), **common),
                Node(executable='edge_node', name='edge_node',
                     condition=UnlessCondition(composed), **common)]

    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the edge nodes and their topics'),
        DeclareLaunchArgument('camera_topic', default_value='image_raw',
                              description='camera topic (sensor_msgs/Image); its /compressed '
                                          'sibling is used with input_transport: compressed'),
        DeclareLaunchArgument('features_topic', default_value='features',
                              description='topic of the encoded features (the host\'s '
                                          'features_topic must name the same)'),
        DeclareLaunchArgument('params_file', default_value=PathJoinSubstitution(
            [share, 'config', 'edge.yaml']),
            description='YAML parameters of the edge nodes'),
        DeclareLaunchArgument('fastdds_profile', default_value=PathJoinSubstitution(
            [share, 'config', 'fastdds_large_data.xml']),
            description='Fast DDS profile of the edge nodes (FASTDDS_DEFAULT_PROFILES_FILE): '
                        'the shipped one lets camera frames of 640x480 and up through; the '
                        'camera driver needs the same'),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE',
                               LaunchConfiguration('fastdds_profile')),
        DeclareLaunchArgument('device', default_value='cpu',
                              description='torch device of the edge models: cpu, cuda, cuda:N'),
        DeclareLaunchArgument('composed', default_value='true',
                              description='true: edge_process (denoiser and target nodes on '
                                          'the priority executor); false: one edge_node'),
        DeclareLaunchArgument('bundle', default_value='',
                              description='a bundle: a shipped one by name (scenes) or a '
                                          'folder; the host needs the same. "" = the params '
                                          'file\'s'),
        OpaqueFunction(function=nodes),
    ])
