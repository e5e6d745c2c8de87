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
rosbag2 tooling (ros/bag*.py, harness/demo_bag.py) on real DDS: demo bag, play, record, info.

Players and recorders run as separate OS processes on the test's private,
localhost-only domain; the test receives with its own rclpy node.
"""

import json
from pathlib import Path
import subprocess
import sys
import time

import numpy as np
import pytest

from edge_denoise_ros.core import data
from edge_denoise_ros.core.models import compute_threads
from edge_denoise_ros.harness import demo_bag
from edge_denoise_ros.ros import bag, bag_player, conversions

CLI = [sys.executable, '-m', 'edge_denoise_ros.cli']
# The installed ``bag_player`` executable (beside the interpreter in a venv); the module otherwise.
_SCRIPT = Path(sys.executable).with_name('bag_player')
BAG_PLAYER = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, '-m',
                                                      'edge_denoise_ros.ros.bag_player']
FRAMES = 10


@pytest.fixture(scope='module')
def demo_bags(tmp_path_factory):
    """Two small demo bags: sqlite3 with bgr8 Images at 10 Hz, MCAP with PNG rgb8 frames."""
    root = tmp_path_factory.mktemp('bags')
    cfgs = {
        'sqlite3': demo_bag.DemoBagConfig(frames=FRAMES, storage='sqlite3', rate_hz=10.0, seed=1),
        'mcap': demo_bag.DemoBagConfig(frames=6, storage='mcap', compressed='png',
                                       encoding='rgb8', seed=2),
    }
    with compute_threads(1):
        return {name: (str(root / name), demo_bag.make_demo_bag(root / name, cfg), cfg)
                for name, cfg in cfgs.items()}


def by_topic(path):
    out = {}
    for topic, msgtype, stamp, msg in bag.read_messages(path):
        out.setdefault(topic, []).append((stamp, msg))
    return out


# --- the demo bag ------------------------------------------------------------------------------

@pytest.mark.parametrize('which', ['sqlite3', 'mcap'])
def test_demo_bag_holds_clean_and_attacked_frames_with_ground_truth(demo_bags, which):
    path, summary, cfg = demo_bags[which]
    n = cfg.frames
    info = bag.bag_info(path)
    camera_type = 'sensor_msgs/msg/CompressedImage' if cfg.compressed else 'sensor_msgs/msg/Image'
    assert info['storage'] == which and info['messages'] == 2 * n
    assert info['topics'] == {cfg.image_topic: {'type': camera_type, 'count': n},
                              '/ground_truth': {'type': 'std_msgs/msg/String', 'count': n}}
    meta = demo_bag.demo_metadata(path)
    assert meta['seed'] == cfg.seed and meta['frames'] == n and meta['eps'] == cfg.eps
    assert summary['clean'] + summary['adversarial'] == n and summary['adversarial'] == n // 2

    msgs = by_topic(path)
    truths = [json.loads(m.data) for _, m in msgs['/ground_truth']]
    frames = {demo_bag.stamp_ns(m.header): m for _, m in msgs[cfg.image_topic]}
    images, labels = data.load_fashion_mnist('test')
    assert sum(t['adversarial'] for t in truths) == n // 2
    assert demo_bag.read_ground_truth(path) == {t['stamp_ns']: t for t in truths}
    for t in truths:
        msg = frames[t['stamp_ns']]  # every truth has its frame, matched by header stamp
        assert msg.header.frame_id == t['frame_id'] == 'camera'
        assert t['stamp'] == {'sec': msg.header.stamp.sec, 'nanosec': msg.header.stamp.nanosec}
        assert t['label'] == labels[t['index']] and t['label_name'] == data.CLASSES[t['label']]
        frame, encoding = conversions.camera_msg_to_image(msg)
        assert frame.shape == (cfg.size, cfg.size, 3) and encoding == cfg.encoding
        seen = (data.preprocess_frame(frame, encoding)[0, 0] * 255).round().numpy()
        diff = np.abs(seen - images[t['index']].astype(np.float64))
        if t['adversarial']:
            assert 0 < diff.max() <= round(cfg.eps * 255) + 1  # inside the PGD budget
        else:
            assert diff.max() == 0  # preprocessing recovers the clean sample exactly


def test_demo_attack_fools_the_undefended_target(demo_bags):
    acc = demo_bags['sqlite3'][1]['target_accuracy']
    assert acc['clean'] >= 0.8 and acc['adversarial'] <= 0.2, acc


def test_demo_bag_is_deterministic_and_never_overwritten_by_accident(tmp_path):
    cfg = demo_bag.DemoBagConfig(frames=4, seed=5)

    def raw(path):
        reader = bag.open_bag(path)
        try:
            return [(c.topic, t, bytes(d)) for c, t, d in reader.messages()]
        finally:
            reader.close()

    demo_bag.make_demo_bag(tmp_path / 'a', cfg)
    demo_bag.make_demo_bag(tmp_path / 'b', cfg)
    assert raw(tmp_path / 'a') == raw(tmp_path / 'b')
    with pytest.raises(ValueError, match='exists already'):
        demo_bag.make_demo_bag(tmp_path / 'a', cfg)
    (tmp_path / 'c').mkdir()
    with pytest.raises(ValueError, match='not a rosbag2 directory'):
        demo_bag.make_demo_bag(tmp_path / 'c', cfg, overwrite=True)
    other = demo_bag.make_demo_bag(tmp_path / 'a', demo_bag.DemoBagConfig(frames=4, seed=6),
                                   overwrite=True)
    assert other['frames'] == 4 and raw(tmp_path / 'a') != raw(tmp_path / 'b')


def test_rosbags_and_rclpy_messages_share_their_cdr_bytes():
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import String

    image = conversions.image_to_msg(
        np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8), 'bgr8')
    image.header.frame_id, image.header.stamp.sec = 'cam', 42
    compressed = CompressedImage(format='png', data=b'\x89PNG...')
    for msg in (image, compressed, String(data='{"label": 3}')):
        theirs = bag.rclpy_to_rosbags(msg)
        assert theirs.__msgtype__ == bag.msgtype_of(msg)
        # Equal up to alignment padding, which rclpy leaves uninitialised.
        assert bytes(bag.typestore().serialize_cdr(theirs, theirs.__msgtype__)) == \
            bag.canonical_cdr(msg)
        assert len(bag.canonical_cdr(msg)) == len(bag.to_cdr(msg))
        assert bag.rosbags_to_rclpy(theirs) == msg
        assert bag.from_cdr(bag.canonical_cdr(msg), bag.msgtype_of(msg)) == msg


def test_ros_arguments_are_kept_apart_from_ours():
    """``old:=new`` values of --remap must not reach rcl, which would apply them process-wide."""
    own, ros = bag_player.split_ros_args(['bag_player', 'b', '--remap', 'a:=b', '--ros-args',
                                          '-r', '__node:=p', '--', '--rate', '2'])
    assert own == ['b', '--remap', 'a:=b', '--rate', '2']
    assert ros == ['bag_player', '--ros-args', '-r', '__node:=p']
    rules = bag_player.parse_remap(['image_raw:=/cam/image', '/a:=b'])
    assert rules == {'/image_raw': '/cam/image', '/a': 'b'}


# --- bad input ---------------------------------------------------------------------------------

def run(args, timeout=60):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def test_bad_bags_and_options_fail_with_one_line_reasons(tmp_path, demo_bags):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'broken').mkdir()
    (tmp_path / 'broken' / 'metadata.yaml').write_text('rosbag2_bagfile_information: {}\n')
    sqlite_bag = demo_bags['sqlite3'][0]
    cases = [
        (CLI + ['bag', 'play', str(tmp_path / 'nope')], 'bag not found'),
        (BAG_PLAYER + [str(tmp_path / 'nope')], 'bag not found'),
        (CLI + ['bag', 'play', str(tmp_path / 'empty')], 'not a rosbag2 directory'),
        (CLI + ['bag', 'info', str(tmp_path / 'broken')], 'cannot read bag'),
        (CLI + ['bag', 'play', sqlite_bag, '--topics', '/nope'], 'topic /nope is not in bag'),
        (CLI + ['bag', 'play', sqlite_bag, '--remap', 'image_raw'], 'bad remapping'),
        (CLI + ['bag', 'play', sqlite_bag, '--rate', '0'], 'rate must be > 0'),
        (CLI + ['bag', 'record', '/image_raw', '-o', sqlite_bag], 'exists already'),
    ]
    for args, reason in cases:
        done = run(args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert reason in done.stderr and len(done.stderr.strip().splitlines()) == 1, \
            (args, done.stderr)


def test_info_cli_reports_topics_and_counts(demo_bags):
    path = demo_bags['mcap'][0]
    done = run(CLI + ['bag', 'info', path, '--json'])
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info['storage'] == 'mcap' and info['messages'] == 12
    assert info['topics']['/image_raw/compressed']['count'] == 6


# --- play and record on real DDS ---------------------------------------------------------------

class Receiver:
    """
    A test node that keeps every camera frame and ground truth it receives.

    Camera frames: best effort (as the player offers them) with a deep queue,
    so a busy test process does not drop frames itself; ground truth: reliable.
    """

    def __init__(self, context, camera_topic, camera_type, truth_topic='/ground_truth'):
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String

        self.node = Node('test_receiver', context=context)
        self.frames, self.truths = [], []
        self.node.create_subscription(
            camera_type, camera_topic, lambda m: self.frames.append((time.monotonic(), m)),
            QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.node.create_subscription(String, truth_topic, lambda m: self.truths.append(
            json.loads(m.data)), bag.reliable_qos_profile())
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def spin_until(self, done, timeout=60.0, grace=0.5):
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        end = time.monotonic() + grace
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self):
        self.node.destroy_node()


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def camera_class(cfg):
    from sensor_msgs.msg import CompressedImage, Image
    return CompressedImage if cfg.compressed else Image


@pytest.mark.ros
@pytest.mark.parametrize('which', ['sqlite3', 'mcap'])
def test_play_delivers_every_frame_and_its_ground_truth(demo_bags, which, rclpy_context,
                                                        processes):
    path, _, cfg = demo_bags[which]
    expected = by_topic(path)
    rx = Receiver(rclpy_context, cfg.image_topic, camera_class(cfg))
    try:
        proc = processes.start(CLI + ['bag', 'play', path, '--wait-for-subscribers', '30',
                                      '--json'])
        rx.spin_until(lambda: proc.poll() is not None)
        out, err = proc.communicate(timeout=30)
    finally:
        rx.close()
    assert proc.returncode == 0, err
    report = last_json(out)
    n = cfg.frames
    assert report['played'] == {'/ground_truth': n, cfg.image_topic: n}
    assert report['total'] == 2 * n and report['loops'] == 1 and not report['interrupted']
    assert report['storage'] == which and report['unmatched'] == []
    # Every frame arrived, in order, byte for byte, and each matches its ground truth.
    assert [m for _, m in rx.frames] == [m for _, m in expected[cfg.image_topic]]
    assert rx.truths == [json.loads(m.data) for _, m in expected['/ground_truth']]
    assert [t['stamp_ns'] for t in rx.truths] == [demo_bag.stamp_ns(m.header)
                                                  for _, m in rx.frames]


@pytest.mark.ros
def test_play_honours_rate_topics_and_remapping(demo_bags, rclpy_context, processes):
    """``bag_player --rate 0.5`` takes twice the recorded span; only the chosen topic, renamed."""
    path, _, cfg = demo_bags['sqlite3']
    rx = Receiver(rclpy_context, '/cam/image', camera_class(cfg))
    try:
        proc = processes.start(BAG_PLAYER + [
            path, '--rate', '0.5', '--topics', 'image_raw', '--remap', 'image_raw:=/cam/image',
            '--wait-for-subscribers', '30', '--json', '--ros-args', '-r', '__node:=rate_player'])
        rx.spin_until(lambda: proc.poll() is not None)
        out, err = proc.communicate(timeout=30)
    finally:
        rx.close()
    assert proc.returncode == 0, err
    report = last_json(out)
    span = (cfg.frames - 1) / cfg.rate_hz
    assert report['played'] == {'/cam/image': cfg.frames} and report['rate'] == 0.5
    assert len(rx.frames) == cfg.frames and rx.truths == []
    assert report['bag_duration_s'] == pytest.approx(span, abs=1e-5)
    # Lower bounds only (a loaded machine makes playback later, never earlier):
    # the last message is published no earlier than span / rate after the start.
    assert report['wall_s'] + report['max_lag_ms'] / 1e3 >= span / 0.5 - 1e-3
    arrivals = [t for t, _ in rx.frames]
    assert arrivals[-1] - arrivals[0] > span  # slower than recorded: the rate was applied


@pytest.mark.ros
def test_loop_replays_until_interrupted(demo_bags, rclpy_context, processes):
    path, _, cfg = demo_bags['mcap']
    rx = Receiver(rclpy_context, cfg.image_topic, camera_class(cfg))
    try:
        proc = processes.start(CLI + ['bag', 'play', path, '--loop', '--rate', '4',
                                      '--wait-for-subscribers', '30', '--json'])
        rx.spin_until(lambda: len(rx.frames) > 2 * cfg.frames or proc.poll() is not None,
                      grace=0.0)
        out, err = processes.stop(proc)
    finally:
        rx.close()
    assert proc.returncode == 0, err
    report = last_json(out)
    assert report['interrupted'] and report['loops'] >= 2
    assert report['played'][cfg.image_topic] >= len(rx.frames) > 2 * cfg.frames


@pytest.mark.ros
def test_record_then_compare_with_the_played_bag(demo_bags, tmp_path, processes, ros_domain):
    path, _, cfg = demo_bags['sqlite3']
    out_bag = tmp_path / 'recorded'
    n = 2 * cfg.frames
    recorder = processes.start(CLI + ['bag', 'record', '/image_raw', '/ground_truth', '-o',
                                      str(out_bag), '--max-messages', str(n), '--duration', '60',
                                      '--json'])
    player = processes.start(CLI + ['bag', 'play', path, '--rate', '2',
                                    '--wait-for-subscribers', '30', '--json'])
    out, err = recorder.communicate(timeout=90)
    player.communicate(timeout=30)
    assert recorder.returncode == 0 and player.returncode == 0, err
    result = last_json(out)
    assert result['total'] == n and result['missing'] == []
    assert result['topics']['/image_raw'] == {'type': 'sensor_msgs/msg/Image',
                                              'count': cfg.frames}
    info = bag.bag_info(out_bag)
    assert info['storage'] == 'mcap' and info['messages'] == n
    recorded, original = by_topic(out_bag), by_topic(path)
    assert set(recorded) == set(original)
    for topic in original:  # the same messages, in the same order
        assert [m for _, m in recorded[topic]] == [m for _, m in original[topic]]
