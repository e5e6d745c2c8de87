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

"""Dynamic batching: batched equals one-by-one, the flush rule, fairness, exact accounting."""

import random
import threading
import time

import pytest
import torch

from edge_denoise_ros.core import accounting, data, pipeline, tails, wire
from edge_denoise_ros.core.batching import (BatchConfig, Batcher, BatchTimes, group_key,
                                            infer_batch, Pending, SKIPPED)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def advance(self, ms):
        self.now += ms / 1000.0


@pytest.fixture(scope='module')
def target():
    return pipeline.Target()


@pytest.fixture(scope='module')
def frames():
    images, labels = data.load_fashion_mnist('test')
    return [data.sample_to_frame(images[i], 56, 'bgr8') for i in range(12)]


def _messages(target, frames, cut, codec, quality=5):
    stage = pipeline.EdgeStage(target, pipeline.EdgeSettings('none', cut, codec, quality))
    return [stage.process(f, 'bgr8') for f in frames]


def _pending(robot, out, **extra):
    meta = wire.parse_format(wire.format_string({**out.meta, **extra}))
    return Pending(robot, out.payload, meta)


@pytest.mark.parametrize('cut,codec', [('layer1', 'jpeg'), ('layer2', 'lossless'),
                                       ('output', 'raw'), ('frame', 'jpeg')])
def test_batched_equals_one_by_one(target, frames, one_thread, cut, codec):
    stage = pipeline.HostStage(target, tails=tails.finetuned_tails(target))
    outs = _messages(target, frames, cut, codec)
    items = [_pending(f'robot{i % 3}', out) for i, out in enumerate(outs)]
    items = [Pending(i.robot, i.payload, stage.check(i.meta)) for i in items]
    assert len({i.key for i in items}) == 1
    times = BatchTimes()
    batched = infer_batch(stage, items, times)
    assert times.batches == 1 and times.samples == len(items)
    for item, outcome in zip(items, batched):
        assert outcome.error is None and outcome.item is item
        alone, _ = stage.process(item.payload, item.meta)
        assert outcome.logits.shape == alone.shape == (10,)
        assert torch.allclose(outcome.logits, alone, rtol=0, atol=1e-5), \
            (outcome.logits - alone).abs().max()


def test_a_bad_message_fails_alone(target, frames):
    stage = pipeline.HostStage(target, tails=tails.finetuned_tails(target))
    outs = _messages(target, frames[:4], 'layer1', 'jpeg')
    items = [Pending('r', o.payload, stage.check(o.meta)) for o in outs]
    items[1].payload = items[1].payload[:len(items[1].payload) // 2]
    outcomes = infer_batch(stage, items)
    assert outcomes[1].error is not None and outcomes[1].error.kind == 'codec'
    assert [o.logits is not None for o in outcomes] == [True, False, True, True]
    alone, _ = stage.process(items[2].payload, items[2].meta)
    assert torch.allclose(outcomes[2].logits, alone, rtol=0, atol=1e-5)


def test_a_batch_holds_one_group(target, frames):
    stage = pipeline.HostStage(target)
    a = _messages(target, frames[:1], 'layer1', 'jpeg')[0]
    b = _messages(target, frames[:1], 'layer1', 'jpeg', quality=50)[0]
    items = [Pending('r', o.payload, stage.check(o.meta)) for o in (a, b)]
    assert items[0].key != items[1].key
    with pytest.raises(ValueError, match='one group'):
        infer_batch(stage, items)


def test_group_key_names_what_a_tail_needs():
    meta = {'model': 'abc', 'cut': 'layer1', 'codec': 'jpeg', 'quality': 5, 'shape': (16, 7, 7),
            'seq': '3', 'epoch': 'ab' * 8, 't_rx': '1'}
    key = group_key(meta)
    assert key == group_key({**meta, 'seq': '4', 'epoch': 'cd' * 8, 't_rx': '2'})
    for change in ({'model': 'abd'}, {'cut': 'layer2'}, {'codec': 'q8'}, {'quality': 6},
                   {'shape': (16, 7, 8)}):
        assert group_key({**meta, **change}) != key, change
    assert group_key({**meta, 'codec': 'lossless', 'quality': 9})[3] is None


def _item(robot, key=('m', 'layer1', 'jpeg', 5, (1,), None), n=0):
    item = Pending(robot, b'', {'seq': n}, key=key)
    return item


def test_flush_when_full_or_when_the_oldest_waited_the_delay():
    clock = FakeClock()
    b = Batcher(BatchConfig(max_batch=4, max_batch_delay_ms=5.0, queue_depth=8), clock)
    for i in range(3):
        b.put(_item(f'r{i}'))
        clock.advance(1)
    assert b.next_batch(timeout=0) == []          # 3 < 4 and the oldest waited 3 ms
    clock.advance(2)                              # the oldest waited 5 ms: due
    assert len(b.next_batch(timeout=0)) == 3
    for i in range(5):
        b.put(_item(f'r{i % 2}'))
    assert len(b.next_batch(timeout=0)) == 4      # full: at once
    assert b.next_batch(timeout=0) == []
    clock.advance(5)
    assert len(b.next_batch(timeout=0)) == 1
    assert b.batches == 3 and b.batched == 8


def test_max_batch_one_serves_robots_in_turn_newest_first():
    clock = FakeClock()
    dropped = []
    b = Batcher(BatchConfig(max_batch=1, max_batch_delay_ms=50.0), clock, dropped.append)
    for i in range(6):                          # r0: 0, 3; r1: 1, 4; r2: 2, 5
        b.put(_item(f'r{i % 3}', n=i))
        clock.advance(0.1)
    got = [b.next_batch(timeout=0) for _ in range(4)]
    # robots in turn, the longest waiting first; each robot's newest; the older one of a
    # served robot is superseded: dropped and counted for that robot
    assert [g[0].meta['seq'] for g in got[:3]] == [3, 4, 5] and got[3] == []
    assert sorted(i.meta['seq'] for i in dropped) == [0, 1, 2]
    assert b.dropped == {'r0': 1, 'r1': 1, 'r2': 1}


def test_a_batch_with_room_serves_every_message_of_a_robot():
    clock = FakeClock()
    b = Batcher(BatchConfig(max_batch=8, max_batch_delay_ms=1.0), clock)
    for i in range(6):
        b.put(_item(f'r{i % 3}', n=i))
        clock.advance(0.1)
    clock.advance(1)
    assert sorted(i.meta['seq'] for i in b.next_batch(timeout=0)) == list(range(6))
    assert not b.dropped


def test_groups_are_never_mixed_and_the_oldest_group_goes_first():
    clock = FakeClock()
    b = Batcher(BatchConfig(max_batch=8, max_batch_delay_ms=1.0), clock)
    k1, k2 = ('m', 'layer1', 'jpeg', 5, (1,), None), ('m', 'layer2', 'raw', None, (2,), None)
    b.put(_item('a', k2))
    clock.advance(0.5)
    for robot in 'abc':
        b.put(_item(robot, k1))
    clock.advance(1)
    first, second = b.next_batch(timeout=0), b.next_batch(timeout=0)
    assert [i.key for i in first] == [k2]
    assert [i.key for i in second] == [k1] * 3


def test_a_flooding_robot_cannot_starve_the_others():
    clock = FakeClock()
    b = Batcher(BatchConfig(max_batch=4, max_batch_delay_ms=2.0, queue_depth=3), clock)
    pushed = []
    for n in range(100):                       # robot "flood" sends 100 in a burst
        pushed.append(b.put(_item('flood', n=n)))
        clock.advance(0.001)
    for robot in ('quiet1', 'quiet2'):
        assert b.put(_item(robot)) is None
    assert b.pending('flood') == 3 and b.pending() == 5
    assert b.dropped == {'flood': 97}          # every drop counted, for its own robot only
    assert [p.meta['seq'] for p in pushed if p is not None] == list(range(97))  # oldest out
    batch = b.next_batch(timeout=0)            # 5 >= 4: due at once
    assert sorted(i.robot for i in batch) == ['flood', 'flood', 'quiet1', 'quiet2']
    assert [i.meta['seq'] for i in batch if i.robot == 'flood'] == [98, 99]  # newest won
    assert b.dropped == {'flood': 98} and b.pending() == 0   # 97 superseded by 98, 99


def test_round_robin_over_many_robots_serves_each_within_a_round():
    clock = FakeClock()
    b = Batcher(BatchConfig(max_batch=4, max_batch_delay_ms=0.0, queue_depth=4), clock)
    robots = [f'r{i}' for i in range(10)]
    for _ in range(4):
        for robot in robots:
            b.put(_item(robot))
            clock.advance(0.01)
    served = []
    for _ in range(3):  # 12 slots >= 10 robots: everyone served once before anyone twice
        served += [i.robot for i in b.next_batch(timeout=0)]
    assert set(served[:10]) == set(robots), served


def test_configure_shrinks_queues_and_counts_the_drops():
    b = Batcher(BatchConfig(queue_depth=4), FakeClock())
    for n in range(4):
        b.put(_item('a', n=n))
    b.configure(BatchConfig(queue_depth=1))
    assert b.pending('a') == 1 and b.dropped['a'] == 3


@pytest.mark.parametrize('kwargs', [{'max_batch': 0}, {'max_batch_delay_ms': -1.0},
                                    {'queue_depth': 0}, {'max_batch': 2.5}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        BatchConfig(**kwargs)


def test_an_inference_thread_gets_batches_within_the_delay_and_stops_on_close():
    b = Batcher(BatchConfig(max_batch=64, max_batch_delay_ms=20.0))
    got, waited = [], []

    def worker():
        while True:
            batch = b.next_batch(timeout=5.0)
            if not batch:
                return
            waited.append(time.monotonic() - batch[0].arrived)
            got.append(len(batch))

    thread = threading.Thread(target=worker)
    thread.start()
    for robot in 'abc':
        b.put(_item(robot))
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.005)
    b.close()
    thread.join(5)
    assert not thread.is_alive()
    assert got == [3] and 0.015 <= waited[0] < 1.0, (got, waited)


def test_played_equals_served_plus_dropped_with_a_reason_for_every_robot():
    """Simulated robots, a lossy link and a slow host: every frame lands in one bucket."""
    rng = random.Random(7)
    clock = FakeClock()
    b = Batcher(BatchConfig(max_batch=4, max_batch_delay_ms=3.0, queue_depth=2), clock)
    robots = {f'robot{i}': {'epoch': accounting.new_epoch(), 'seq': 0,
                            'account': accounting.StreamAccount()} for i in range(5)}
    played = {r: 0 for r in robots}
    served = {r: 0 for r in robots}
    for step in range(2000):
        for name, robot in robots.items():
            rate = 0.9 if name == 'robot0' else 0.2        # robot0 floods
            if rng.random() < rate:
                robot['seq'] += 1
                played[name] += 1
                if rng.random() < 0.05:
                    continue                               # lost on the link
                robot['account'].check(robot['epoch'], robot['seq'], now=clock())
                b.put(_item(name, n=robot['seq']))
        clock.advance(1)
        if step % 3 == 0:                                  # the host is slower than the fleet
            for item in b.next_batch(timeout=0):
                served[item.robot] += 1
    for item in b.drain():                                 # the rest is served at the end
        served[item.robot] += 1
    for name, robot in robots.items():
        last = robot['account'].last_seq
        trailing = played[name] - last                     # lost after the last arrival
        drops = robot['account'].drops['lost_in_transit'] + b.dropped[name] + trailing
        assert played[name] == served[name] + drops, name
    assert b.dropped['robot0'] > 0 and SKIPPED == 'skipped'
    assert served['robot1'] > 0.8 * (played['robot1'] * 0.95) - 5
