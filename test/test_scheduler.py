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

"""The job queue, the kernel launcher, scheduled models and the denoise/target overlap."""

import threading
import time

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from edge_denoise_ros.core import models, overlap, scheduler as S
from edge_denoise_ros.core.overlap import FrameQueue, Overlap
from edge_denoise_ros.core.scheduled_model import ScheduledModel
from edge_denoise_ros.core.scheduler import (Job, JobQueue, Scheduler, SchedulerClosed,
                                             SchedulerConfig)

WAIT = 30.0  # seconds: a bound for waits that succeed in milliseconds


def edge_threads():
    return [t.name for t in threading.enumerate()
            if t.name.startswith(S.THREAD_PREFIX) and t.is_alive()]


@pytest.fixture(autouse=True, scope='module')
def one_torch_thread():
    """Keep torch to one intra-op thread here: the launcher threads are the parallelism."""
    with models.compute_threads(1):
        yield


@pytest.fixture(autouse=True)
def no_thread_left_behind():
    before = set(edge_threads())
    yield
    assert set(edge_threads()) <= before, 'a scheduler or overlap thread outlived its test'


class TinyUNet(nn.Module):
    """A stand-in with the shape of a denoiser: blocks, a skip across blocks, a residual."""

    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU())
        self.mid = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.up = nn.Conv2d(5, 1, 1)

    def forward(self, x):
        skip = x
        y = self.mid(self.down(x))
        y = F.interpolate(y, size=skip.shape[-2:], mode='bilinear', align_corners=False)
        return x + self.up(torch.cat([y, skip], 1))


def job(priority, seq=0, submitted=0.0):
    return Job(priority, 'm', None, lambda: None, (), {}, None, seq, submitted)


def blocker(sched, priority=100):
    """Occupy the (single) launcher worker until the returned event is set."""
    started, release = threading.Event(), threading.Event()

    def hold():
        started.set()
        assert release.wait(WAIT)

    fut = sched.submit(hold, priority=priority)
    assert started.wait(WAIT)
    return release, fut


# ------------------------------------------------------------------------ queue


def test_queue_pops_highest_priority_first_and_fifo_within_a_priority():
    q = JobQueue()
    jobs = [Job(p, f'm{i}', i, None, (), {}, None) for i, p in enumerate([1, 5, 1, 9, 5, 1])]
    for j in jobs:
        q.push(j)
    order = [q.pop().frame for _ in range(len(jobs))]
    assert order == [3, 1, 4, 0, 2, 5]
    assert q.pop() is None and len(q) == 0


def test_queue_aging_lets_a_waiting_low_priority_job_overtake():
    now = [0.0]
    q = JobQueue(aging_per_s=1.0, clock=lambda: now[0])
    low = q.push(Job(0, 'background', 0, None, (), {}, None))
    now[0] = 2.5
    high = q.push(Job(2, 'camera', 1, None, (), {}, None))
    assert q.effective(low) == pytest.approx(2.5)
    assert q.best() is low                        # aged 2.5 > fresh 2
    assert q.best(floor=2.6) is None              # but not above a floor it has not reached
    q.pop()
    assert q.pop() is high


def test_queue_without_aging_starves_low_priority_for_as_long_as_high_arrives():
    now = [0.0]
    q = JobQueue(aging_per_s=0.0, clock=lambda: now[0])
    q.push(Job(0, 'background', 0, None, (), {}, None))
    for i in range(100):
        now[0] = float(i)
        q.push(Job(1, 'camera', i + 1, None, (), {}, None))
        assert q.pop().model == 'camera'


# -------------------------------------------------------------------- launcher


def test_launcher_runs_queued_jobs_by_priority_fifo_within_priority():
    ran = []
    with Scheduler(SchedulerConfig(hold_s=0)) as sched:
        release, first = blocker(sched)
        futs = [sched.submit(ran.append, (name,), priority=p)
                for name, p in [('low-a', 0), ('high-a', 9), ('mid', 5), ('low-b', 0),
                                ('high-b', 9)]]
        release.set()
        for f in futs + [first]:
            f.result(WAIT)
    assert ran == ['high-a', 'high-b', 'mid', 'low-a', 'low-b']


def test_priority_comes_from_the_callers_context():
    with Scheduler(SchedulerConfig(hold_s=0)) as sched:
        with S.at_priority(7):
            sched.submit(lambda: None).result(WAIT)
            sched.run(lambda: None)
        sched.run(lambda: None)
        assert sched.stats()['by_priority'] == {0: 1, 7: 2}


def test_a_free_device_runs_the_callers_job_inline_and_a_busy_one_queues_it():
    me = threading.get_ident()
    with Scheduler(SchedulerConfig(workers=1)) as sched:
        assert sched.run(threading.get_ident) == me              # no thread switch
        release, first = blocker(sched)                         # the only slot is taken
        result = []
        t = threading.Thread(target=lambda: result.append(sched.run(threading.get_ident)))
        t.start()
        time.sleep(0.05)
        assert result == []                                     # it waits for the slot
        release.set()
        t.join(WAIT)
        launcher = {th.ident for th in sched.threads()}
        assert result[0] in launcher and sched.stats()['inline'] == 1
    with Scheduler(SchedulerConfig(inline=False)) as sched:
        assert sched.run(threading.get_ident) != me


def test_a_spare_slot_serves_only_a_job_that_outranks_everything_running():
    with Scheduler(SchedulerConfig(workers=1, spare_workers=1, hold_s=0)) as sched:
        release, first = blocker(sched, priority=0)             # the regular slot
        same = sched.submit(lambda: 'same', priority=0)
        assert sched.run(lambda: 'high', priority=5) == 'high'  # did not wait for the blocker
        time.sleep(0.05)
        assert not same.done()                                  # no spare for an equal rank
        release.set()
        assert same.result(WAIT) == 'same'
    assert len(sched.threads()) == 2


def test_aging_keeps_low_priority_from_starving_under_a_stream_of_high_priority_jobs():
    def order_of_low(aging):
        ran, last = [], threading.Event()
        with Scheduler(SchedulerConfig(aging_per_s=aging, hold_s=0)) as sched:

            def high(k):                 # each camera job queues a fresh one: a steady stream
                ran.append('high')
                time.sleep(0.002)
                if k < 40:
                    sched.submit(high, (k + 1,), priority=1)
                else:
                    last.set()

            release, first = blocker(sched)
            low = sched.submit(ran.append, ('low',), priority=0)
            sched.submit(high, (0,), priority=1)
            release.set()
            assert last.wait(WAIT)
            low.result(WAIT)
        return ran.index('low')

    assert order_of_low(0.0) == 41           # without aging it waits for the stream to end
    assert order_of_low(1000.0) < 5          # one level per ms waited: it gets its turn


def test_exception_reaches_the_submitter_and_the_launcher_survives():
    with Scheduler() as sched:
        fut = sched.submit(lambda: 1 / 0, model='broken', frame=3)
        with pytest.raises(ZeroDivisionError):
            fut.result(WAIT)
        with pytest.raises(RuntimeError, match='bad block'):
            sched.run(_raise, 'bad block')
        assert sched.run(lambda a, b: a + b, 2, 3) == 5
        stats = sched.stats()
    assert stats['failed'] == 2 and stats['completed'] == 1


def _raise(text):
    raise RuntimeError(text)


def test_scheduled_model_exception_reaches_the_model_thread():
    bad = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(3, 4, 3))  # 2 != 3 channels
    with Scheduler() as sched:
        model = ScheduledModel(bad, sched)
        with pytest.raises(RuntimeError):
            model(torch.rand(1, 1, 8, 8))
        ok = ScheduledModel(nn.Sequential(nn.Conv2d(1, 2, 3)), sched)
        assert ok(torch.rand(1, 1, 8, 8)).shape == (1, 2, 6, 6)


def test_close_joins_every_thread_and_refuses_new_jobs():
    sched = Scheduler(SchedulerConfig(workers=3))
    assert len(edge_threads()) == 3
    assert sched.run(lambda: 42) == 42
    assert sched.close(timeout=WAIT)
    assert edge_threads() == []
    with pytest.raises(SchedulerClosed):
        sched.submit(lambda: None)


def test_close_finishes_queued_jobs_or_cancels_them_when_asked():
    sched = Scheduler()
    release, first = blocker(sched)
    done = [sched.submit(lambda i=i: i) for i in range(3)]
    threading.Timer(0.05, release.set).start()
    assert sched.close(timeout=WAIT)
    assert [f.result(0) for f in done] == [0, 1, 2]

    sched = Scheduler()
    release, first = blocker(sched)
    dropped = [sched.submit(lambda: 'never') for _ in range(3)]
    threading.Timer(0.05, release.set).start()
    assert sched.close(cancel_pending=True, timeout=WAIT)
    for f in dropped:
        with pytest.raises(SchedulerClosed):
            f.result(0)
    assert sched.stats()['cancelled'] == 3 and edge_threads() == []


def test_a_session_holds_lower_priority_jobs_between_its_own_jobs():
    def order(hold_s):
        ran = []
        with Scheduler(SchedulerConfig(hold_s=hold_s)) as sched:
            a_started, a_release = threading.Event(), threading.Event()

            def chain():
                with sched.session(5):
                    sched.run(lambda: (ran.append('A'), a_started.set(), a_release.wait(WAIT)))
                    time.sleep(0.05)                      # the model thread between two blocks
                    sched.run(ran.append, 'B')

            t = threading.Thread(target=chain)
            t.start()
            assert a_started.wait(WAIT)
            low = sched.submit(ran.append, ('low',), priority=0)
            a_release.set()
            t.join(WAIT)
            low.result(WAIT)
        return ran

    assert order(hold_s=30.0) == ['A', 'B', 'low']
    assert order(hold_s=0.0) == ['A', 'low', 'B']


def test_jobs_inside_a_session_inherit_its_priority():
    with Scheduler(SchedulerConfig(hold_s=30.0)) as sched:
        with sched.session(8):
            assert sched.run(lambda: 'no deadlock', priority=0) == 'no deadlock'
            inner = ScheduledModel(nn.Sequential(nn.ReLU()), sched, priority=1)
            inner(torch.zeros(1))
            assert S.current_session().priority == 8
        assert S.current_session() is None
        assert sched.stats()['by_priority'] == {8: 2}


@pytest.mark.parametrize('name', ['small_resnet', 'tiny_unet', 'dunet_small'])
def test_scheduled_model_matches_the_plain_forward(name):
    torch.manual_seed(0)
    if name == 'small_resnet':
        from edge_denoise_ros.core.models import SmallResNet
        module, blocks = SmallResNet().eval(), 8  # normalize stem layer1-3 pool flatten fc
    elif name == 'tiny_unet':
        module, blocks = TinyUNet().eval(), 3
    else:
        from edge_denoise_ros.core.dunet import build_dunet
        module, blocks = build_dunet('small').eval(), 10  # fwd0-4 back3-0 final
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        want = module(x)
    with Scheduler(SchedulerConfig(workers=2)) as sched:
        model = ScheduledModel(module, sched, name=name)
        got = model(x, frame=0)
        n = sched.stats()['completed']
    assert model.jobs_per_forward == blocks == n
    assert torch.allclose(got, want, atol=1e-5)


def test_untraceable_model_runs_as_one_job():
    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x  # data-dependent control flow

    with Scheduler() as sched:
        model = ScheduledModel(Branchy(), sched)
        assert model.jobs_per_forward == 1
        assert torch.equal(model(torch.ones(2)), torch.full((2,), 2.0))


def test_bad_arguments_are_value_errors():
    for cfg in [dict(device='tpu'), dict(workers=0), dict(aging_per_s=-1), dict(hold_s=-1),
                dict(intra_op_threads=0)]:
        with pytest.raises(ValueError):
            SchedulerConfig(**cfg)
    with pytest.raises(ValueError):
        FrameQueue(2, 'drop_random')
    with Scheduler() as sched:
        with pytest.raises(ValueError):
            sched.submit(lambda: None, priority=1.5)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='cuda'):
            Scheduler(SchedulerConfig(device='cuda'))


# -------------------------------------------------------------------- overlap


def test_overlap_overlaps_denoise_of_next_frame_with_target_of_this_one():
    denoise_started = {i: threading.Event() for i in range(4)}
    overlapped = []

    def denoise(x, frame=None):
        denoise_started[frame].set()
        return x + 1

    def target(x, frame=None):
        if frame + 1 in denoise_started:
            overlapped.append(denoise_started[frame + 1].wait(WAIT))
        return x * 10

    with Overlap(denoise, target, depth=4) as ov:
        for i in range(4):
            ov.submit(torch.tensor(float(i)))
        out = [ov.get(WAIT) for _ in range(4)]
    assert overlapped == [True, True, True]
    assert [f for f, _ in out] == [0, 1, 2, 3]
    assert [float(y) for _, y in out] == [10.0, 20.0, 30.0, 40.0]


def test_overlap_keeps_frame_order_with_jittered_stages_and_real_models():
    torch.manual_seed(0)
    from edge_denoise_ros.core.models import SmallResNet
    den, tgt = TinyUNet().eval(), SmallResNet().eval()
    frames = [torch.rand(1, 1, 28, 28) for _ in range(12)]
    with Scheduler(SchedulerConfig(workers=2, hold_s=0.001)) as sched:
        d = ScheduledModel(den, sched, 'denoiser')
        t = ScheduledModel(tgt, sched, 'target')
        ref = overlap.sequential(d, t, frames)
        got = overlap.overlapped(d, t, frames, depth=2, priority=3)
        assert set(sched.stats()['by_priority']) == {0, 3}
    with torch.no_grad():
        plain = [tgt(den(x)) for x in frames]
    assert len(got) == 12
    for a, b, c in zip(got, ref, plain):
        assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, c, atol=1e-5)


def test_overlap_exception_is_raised_for_its_frame_and_later_frames_flow():
    def denoise(x, frame=None):
        if frame == 1:
            raise ValueError('corrupt frame')
        return x

    with Overlap(denoise, lambda x, frame=None: x * 2) as ov:
        for i in range(3):
            ov.submit(torch.tensor(float(i)))
        assert ov.get(WAIT)[0] == 0
        with pytest.raises(ValueError, match='corrupt frame'):
            ov.get(WAIT)
        assert ov.get(WAIT) == (2, torch.tensor(4.0))


@pytest.mark.parametrize('policy, dropped, kept', [
    ('drop_oldest', [1, 2], [0, 3, 4]),
    ('drop_newest', [3, 4], [0, 1, 2]),
])
def test_overlap_drops_only_by_its_counted_queue_policy(policy, dropped, kept):
    gate, busy = threading.Event(), threading.Event()

    def denoise(x, frame=None):
        busy.set()
        assert gate.wait(WAIT)
        return x

    with Overlap(denoise, lambda x, frame=None: x, depth=2, policy=policy) as ov:
        ov.submit(torch.tensor(0.0))
        assert busy.wait(WAIT)                       # frame 0 is being denoised
        ids = [ov.submit(torch.tensor(float(i))) for i in range(1, 5)]
        gate.set()
        out = [ov.get(WAIT)[0] for _ in kept]
        assert ov.stats()['dropped'] == len(dropped)
    assert ov.dropped_frames == dropped and out == kept
    if policy == 'drop_newest':
        assert ids == [1, 2, None, None]


def test_overlap_block_policy_never_drops():
    def denoise(x, frame=None):
        time.sleep(0.002)
        return x

    with Overlap(denoise, lambda x, frame=None: x, depth=1, policy='block') as ov:
        reader = []
        t = threading.Thread(target=lambda: reader.extend(ov.get(WAIT)[0] for _ in range(30)))
        t.start()
        for i in range(30):
            ov.submit(torch.tensor(float(i)))
        t.join(WAIT)
    assert reader == list(range(30)) and ov.dropped_frames == []


# ----------------------------------------------------------------------- CUDA

cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason='no CUDA device: the stream/event launcher is not exercised')


@cuda
def test_cuda_scheduled_model_matches_cpu_and_uses_one_stream_per_priority():
    from edge_denoise_ros.core.models import SmallResNet
    torch.manual_seed(0)
    module = SmallResNet().eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        want = module(x)
    with Scheduler(SchedulerConfig(device='cuda')) as sched:
        model = ScheduledModel(module, sched, name='target')
        hi = model(x, priority=2)
        lo = model(x, priority=0)
        other = ScheduledModel(nn.Sequential(nn.ReLU()), sched, name='denoiser')
        other(x, priority=2)
        streams = sched.streams()
        assert set(streams) == {(0, 'target'), (2, 'target'), (2, 'denoiser')}
        high, low = streams[2, 'target'], streams[0, 'target']
        assert high.priority <= low.priority                    # lower number: more urgent
        assert streams[2, 'denoiser'].priority == high.priority  # same level, own stream
        assert high != torch.cuda.current_stream()
        assert hi.device.type == 'cuda'
        assert torch.allclose(hi.cpu(), want, atol=1e-4)
        assert torch.allclose(lo.cpu(), want, atol=1e-4)
        with pytest.raises(RuntimeError):
            sched.run(lambda: torch.ones(2, device='cuda') @ torch.ones(3, device='cuda'))
        assert sched.run(lambda: torch.ones(2, device='cuda').sum()).item() == 2.0
    assert edge_threads() == []


@cuda
def test_cuda_launcher_does_not_wait_for_a_low_priority_kernel():
    with Scheduler(SchedulerConfig(device='cuda', max_inflight=1, hold_s=0)) as sched:
        big = torch.rand(4096, 4096, device='cuda')

        def slow():                                  # many large kernels, queued at once
            y = big
            for _ in range(500):
                y = (y @ big).tanh_()
            return y

        low = sched.submit(slow, priority=0)
        high = sched.submit(lambda: torch.ones(1, device='cuda') * 3, priority=5)
        assert high.result(WAIT).item() == 3.0
        assert not low.done()                        # the high job finished first
        low.result(WAIT)
