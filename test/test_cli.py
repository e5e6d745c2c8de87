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

"""The command line: every command listed without loading torch or rclpy, each one loadable."""

import json
import subprocess
import sys

import pytest

from edge_denoise_ros import cli

HEAVY = ('torch', 'rclpy', 'cv2', 'rosbags')


def _modules_after(*argv: str) -> tuple[set, str]:
    """Run ``edge-denoise ARGV`` in a fresh interpreter; return the heavy modules it loaded."""
    code = ('import json, sys\n'
            'from edge_denoise_ros import cli\n'
            'try:\n'
            f'    cli.main({list(argv)!r})\n'
            'except SystemExit:\n'
            '    pass\n'
            'roots = {m.split(".")[0] for m in sys.modules}\n'
            f'print(json.dumps(sorted(roots & {set(HEAVY)!r})))\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    lines = proc.stdout.strip().splitlines()
    return set(json.loads(lines[-1])), proc.stdout


def test_help_lists_every_command_without_loading_heavy_modules():
    loaded, out = _modules_after('--help')
    assert not loaded, loaded
    for group, name in cli.COMMANDS:
        assert (group or name) in out
    for group in cli.GROUPS:
        loaded, out = _modules_after(group, '--help')
        assert not loaded, (group, loaded)
        assert all(name in out for g, name in cli.COMMANDS if g == group)


def test_only_the_chosen_commands_module_is_loaded():
    assert cli.chosen_command(['bench', 'scheduler', '--json']) == ('bench', 'scheduler')
    assert cli.chosen_command(['eval', '--limit', '5']) == ('', 'eval')
    assert cli.chosen_command(['bench']) is None
    assert cli.chosen_command(['--version']) is None
    loaded, _ = _modules_after('eval', '--help')   # commands.evaluate alone: core, no ROS
    assert 'torch' in loaded and not loaded & {'rclpy', 'rosbags'}, loaded


def test_every_command_registers_its_arguments_and_handler():
    parser = cli.build_parser()
    for (group, name), (entry, _) in cli.COMMANDS.items():
        argv = [group, name] if group else [name]
        sub = parser
        for word in argv:
            sub = next(a for a in sub._actions if a.dest in ('command', f'{group}_command')
                       and a.choices).choices[word]
        assert callable(sub.get_default('func')), entry
        assert any(a.dest == 'json' for a in sub._actions), entry


def test_attack_budgets_read_as_numbers_or_fractions_and_a_pixel_count_is_refused(capsys):
    parser = cli.build_parser()
    args = parser.parse_args(['train', 'denoiser', '--train-eps', '2/255,0.03', '--eps', '8/255'])
    assert args.train_eps == [2 / 255, 0.03] and args.eps == 8 / 255
    assert parser.parse_args(['eval', '--eps', '4/255']).eps == 4 / 255
    for argv in (['train', 'denoiser', '--train-eps', '2,4,8'], ['eval', '--eps', '8'],
                 ['demo', '--eps', '0'], ['eval', '--eps', '8/0']):
        with pytest.raises(SystemExit) as stop:
            parser.parse_args(argv)
        assert stop.value.code == 2, argv
    err = capsys.readouterr().err
    assert 'did you mean 2/255?' in err and 'did you mean 8/255?' in err
    assert "got '8/0'" in err
