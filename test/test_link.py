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

"""The shaped link: two network namespaces, tc tbf, every strategy measured (short run)."""

import subprocess
import sys

import pytest

from edge_denoise_ros.harness import netns
from edge_denoise_ros.harness.linkbench import camera_lost, LinkBenchConfig, run

pytestmark = pytest.mark.ros


def _ours() -> list[str]:
    out = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith('ednr_t')]


@pytest.fixture(scope='module')
def can_make_namespaces():
    reason = netns.unavailable()
    if reason:
        pytest.skip(f'shaped-link test {reason}')
    try:
        with netns.LinkPair('tprobe', index=251):
            pass
    except (RuntimeError, PermissionError, OSError) as exc:
        pytest.skip(f'network namespaces are not permitted here: {exc}')


def test_pair_is_removed_also_on_failure(can_make_namespaces):
    with pytest.raises(ZeroDivisionError):
        with netns.LinkPair('tfail', index=252) as pair:
            pair.shape(2, 100)
            assert set(_ours()) >= {pair.edge_ns, pair.host_ns}
            1 / 0
    assert not _ours()


def test_a_killed_benchmark_removes_its_namespaces(can_make_namespaces):
    # What `edge-denoise bench link` runs in: killed (SIGTERM, not Ctrl-C: a background
    # job ignores SIGINT), it leaves no namespace behind.
    script = ('import time\n'
              'from edge_denoise_ros import cli\n'
              'from edge_denoise_ros.harness import netns\n'
              'with cli.interrupt_on_sigterm():\n'
              '    try:\n'
              '        with netns.LinkPair("tterm", index=253):\n'
              '            print("ready", flush=True)\n'
              '            time.sleep(60)\n'
              '    except KeyboardInterrupt:\n'
              '        print("interrupted", flush=True)\n')
    proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'ready' and _ours()
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert out.strip() == 'interrupted' and proc.returncode == 0
    assert not _ours()


def test_split_jpeg_beats_raw_on_a_slow_link(can_make_namespaces, tmp_path):
    cfg = LinkBenchConfig(rates=(2.0,), strategies=('raw', 'split_jpeg'), duration=8.0,
                          warmup=2.0, out=str(tmp_path), frame_size='224x224')
    result = run(cfg)
    rows = {r['strategy']: r for r in result['rows']}
    raw, split = rows['raw'], rows['split_jpeg']
    assert not raw['crashed'] and not split['crashed']
    assert split['played'] > 100 and split['classified'] > 0
    # What went up the link: raw frames are 224x224x3 bytes, split features far fewer.
    assert raw['bytes_per_frame'] is None or raw['bytes_per_frame'] == 224 * 224 * 3
    assert split['bytes_per_frame'] < 224 * 224 * 3 / 20
    # 2 Mbit/s carries at most ~1.7 raw frames/s: the split strategy must do far better.
    assert raw['fps'] <= 2.0
    assert split['fps'] >= 5 * max(raw['fps'], 0.5)
    # Where the frames went: every frame the edge took in was served or dropped with a reason.
    edge = {k: float(v) for k, v in split['diagnostics']['denoiser'].items()
            if k in ('received', 'frames', 'dropped')}
    assert edge['received'] == edge['frames'] + edge['dropped'] > 0, split['diagnostics']
    assert float(split['diagnostics']['host_node']['frames']) >= split['classified']
    assert split['player']['played'] == {'/image_raw': split['played']}
    assert split['camera_lost'] == split['played'] - edge['received'] >= 0
    assert (tmp_path / 'link.png').stat().st_size > 10_000
    assert not _ours()


def test_camera_frames_lost_before_the_edge_are_played_less_received():
    diagnostics = {'host_node': {'received': '90'}, 'denoiser': {'received': '95.0'}}
    assert camera_lost(100, diagnostics) == 5
    assert camera_lost(100, {'edge_node': {'received': '100'}}) == 0
    assert camera_lost(100, {'video_edge': {'frames': '80'}}) is None    # no intake count
