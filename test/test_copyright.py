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

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sources():
    for pattern in ('edge_denoise_ros/**/*.py', 'test/**/*.py', 'launch/*.py', 'setup.py'):
        yield from sorted(ROOT.glob(pattern))


@pytest.mark.copyright
@pytest.mark.linter
def test_copyright():
    try:
        from ament_copyright.main import main
    except ImportError:
        main = None
    if main is not None:  # a ROS install: the template's own check
        assert main(argv=['.', 'test']) == 0, 'Found errors'
        return
    # Without a ROS install (pip / CI): the same rule, every source names its
    # copyright holder and the Apache-2.0 license in its header.
    missing = []
    for path in _sources():
        head = path.read_text()[:1200]
        if not re.search(r'^# Copyright \d{4} \S', head, re.M) or \
                'Licensed under the Apache License, Version 2.0' not in head:
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f'files without a copyright/license header: {missing}'
    assert len(list(_sources())) > 10
