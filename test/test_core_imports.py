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

"""The numeric core must stay free of ROS: importing it never imports rclpy."""

import pkgutil
import subprocess
import sys

import edge_denoise_ros.core as core


def test_core_never_imports_rclpy():
    modules = [f'edge_denoise_ros.core.{m.name}' for m in pkgutil.iter_modules(core.__path__)]
    assert 'edge_denoise_ros.core.models' in modules
    code = ('import importlib, sys\n'
            f'for m in {modules!r}:\n'
            '    importlib.import_module(m)\n'
            "bad = sorted(k for k in sys.modules if k.split('.')[0] in "
            "('rclpy', 'rosidl_runtime_py', 'sensor_msgs', 'cv_bridge'))\n"
            'print(bad)\n'
            'sys.exit(1 if bad else 0)\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
