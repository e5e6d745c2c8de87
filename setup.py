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

"""ament_python package: works with ``colcon build`` and with ``pip install -e .``."""

from glob import glob
from os.path import isdir, isfile

from setuptools import find_packages, setup

package_name = 'edge_denoise_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.xml')),
        ('share/' + package_name + '/weights', [p for p in glob('weights/*') if isfile(p)]),
    ] + [  # every shipped bundle (its files, not its training checkpoints)
        ('share/' + package_name + '/' + folder, glob(folder + '/*.*'))
        for folder in sorted(glob('weights/*')) if isdir(folder)
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='edge_denoise_ros maintainers',
    maintainer_email='maintainers@edge-denoise-ros.dev',
    description='Defended, split DNN inference for robots with weak computers.',
    license='Apache-2.0',
    python_requires='>=3.10',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'edge-denoise = edge_denoise_ros.cli:main',
            'edge_node = edge_denoise_ros.ros.entry:edge_node',
            'host_node = edge_denoise_ros.ros.entry:host_node',
            'edge_process = edge_denoise_ros.ros.entry:edge_process',
            'bag_player = edge_denoise_ros.ros.bag_player:main',
        ],
    },
)
