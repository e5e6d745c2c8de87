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
A bounded subset of ``bench fuzz`` and ``bench soak`` against the real node processes.

On fewer cases: no crash, every message that reached a callback counted, every valid
message classified; a short soak classifies or explains every frame. The CPU and memory
of the worst case are benchmark figures (``bench fuzz``), not asserted here: these
machines are shared and a timed assertion would test the neighbours.
"""

import pytest

from edge_denoise_ros.harness.fuzz import FuzzConfig, run_fuzz
from edge_denoise_ros.harness.soak import run_soak, SoakConfig

pytestmark = pytest.mark.ros


def _check(result: dict) -> None:
    brief = {k: v for k, v in result.items() if k != 'by_kind'}
    assert result['crashes'] == 0, brief
    assert result['uncounted'] == 0, brief
    assert result['worst_ms'] > 0 and result['worst_mb'] >= 0, brief     # measured, not bounded
    assert result['valid_classified_fraction'] == 1.0, (brief, result['by_kind'])
    assert all(c == 0 for codes in result['exit_codes'].values() for c in codes), brief
    # what the node says it received, per transport, is what the summary accounts for
    assert sum(int(float(v['received'])) for v in result['node_counts'].values()) \
        == result['received'], brief
    for kind, k in result['by_kind'].items():      # the typical case beside the worst one
        assert 0 <= k['median_ms'] <= k['worst_ms'] and 0 <= k['median_mb'] <= k['worst_mb'], \
            (kind, k)


def test_fuzz_host(tmp_path):
    result = run_fuzz(FuzzConfig(target='host', cases=150, seed=11, warmup=10, burst=3,
                                 log_dir=str(tmp_path)))
    _check(result)      # the bursts' messages are counted too
    burst = result['burst']['features']
    assert burst['kind'] == 'oversize' and burst['rounds'] == 2 and burst['probes_served'], burst


def test_fuzz_edge(tmp_path):
    result = run_fuzz(FuzzConfig(target='edge', cases=50, seed=12, warmup=6,
                                 huge_frames=False, log_dir=str(tmp_path)))
    _check(result)
    assert result['received'] == result['sent'], result     # paced: nothing lost on loopback


def test_soak_accounts_for_every_frame(tmp_path):
    # 224x224 frames: the camera runs in this process, whose Fast DDS transports were set by
    # whichever test made its first participant (Fast DDS reads the profile once a process);
    # best-effort frames this size cross with any of them. The nodes load the shipped profile.
    result = run_soak(SoakConfig(frames=150, warmup=30, window=40, frame_size='224x224',
                                 log_dir=str(tmp_path)))
    assert result['frame_size'] == '224x224' and result['fastdds_profile'], result
    assert not result['crashed'] and set(result['exit_codes'].values()) == {0}, result
    assert 'unaccounted' not in result['dropped_by_reason'], result
    assert result['classified'] + sum(result['dropped_by_reason'].values()) == result['frames']
    assert result['classified'] >= result['frames'] * 0.8, result
