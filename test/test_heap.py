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

"""Training commands keep the memory they free: the same weights, and the record says so."""

import json
import os
import subprocess
import sys

from edge_denoise_ros.core import heap

# Run in a child process: the allocator's settings are the process's, for good.
CHILD = r'''
import json, sys
import torch
from edge_denoise_ros.core import bundle, dunet, heap, models, training
settings = heap.keep_freed_memory() if sys.argv[1] == 'keep' else []

torch.set_num_threads(1)
training.seed_everything(0)
target = models.build_model().eval()
x = torch.rand(32, 1, 28, 28)
net = dunet.build_dunet(dunet.DUNetConfig(in_channels=1, input_size=28, fwd_out=(4, 8, 8, 8, 8),
                                           back_out=(4, 8, 8, 8)))
training.train_denoiser(net, target, (x + 0.03 * torch.randn_like(x)).clamp(0, 1), x,
                        training.DenoiserTrainConfig(epochs=1, batch_size=8))
b = bundle.Bundle.open_or_create(sys.argv[2])
models.save_state_dict(net, b.path('dunet.pt'))
entry = b.record_file('dunet.pt', seed=0)
print(json.dumps({'settings': settings,
                  'weights': models.state_hash(net), 'card': entry}))
'''


def _child(mode: str, folder) -> dict:
    done = subprocess.run([sys.executable, '-c', CHILD, mode, str(folder)], capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_process_that_keeps_freed_memory_trains_the_same_weights_and_its_card_says_so(tmp_path):
    kept, default = _child('keep', tmp_path / 'kept'), _child('default', tmp_path / 'default')
    assert any(s.startswith('M_MMAP_THRESHOLD=') for s in kept['settings'])
    assert kept['weights'] == default['weights']      # allocation does not change arithmetic
    assert kept['card']['malloc'] == kept['settings'] and 'malloc' not in default['card']


def test_the_train_command_keeps_freed_memory_and_says_so_and_it_can_be_turned_off(tmp_path):
    table = ['train', 'deepn-jpeg-table', '--limit', '200', '--calibration-images', '100',
             '--no-calibrate', '--json']
    runs = {}
    for name, env in (('kept', {}), ('off', {heap.NO_KEEP_ENV: '1'})):
        done = subprocess.run([sys.executable, '-m', 'edge_denoise_ros.cli', *table, '--out',
                               str(tmp_path / f'{name}.json')], capture_output=True, text=True,
                              timeout=120, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads(done.stdout.strip().splitlines()[-1])['provenance']
    assert any(s.startswith('M_MMAP_THRESHOLD=') for s in runs['kept']['malloc'])
    assert 'malloc' not in runs['off']
    assert heap.keep_freed_memory({heap.NO_KEEP_ENV: '1'}) == []
    # commands called in this test process (as the tests call them) leave its allocator alone
    assert heap.held() == []
