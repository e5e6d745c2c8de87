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

"""One source for every fact: node parameters and CLI options take theirs from the core."""

import argparse
from pathlib import Path
import re

import pytest

from edge_denoise_ros import cli
from edge_denoise_ros.core import data, defenses, models, planner, wire
from edge_denoise_ros.ros import conversions, edge_common, host_node
from edge_denoise_ros.ros.common import FEATURES_QOS_PARAMS, TARGET_PARAMS

PACKAGE = Path(__file__).resolve().parents[1] / 'edge_denoise_ros'
EDGE_PARAMS = edge_common.CAMERA_PARAMS + edge_common.HEAD_PARAMS
LINK = planner.Link()


def _spec(specs, name):
    return next(s for s in specs if s.name == name)


def _command(*words) -> argparse.ArgumentParser:
    parser = cli.build_parser(load=[(words[0], words[1]) if len(words) == 2 else ('', words[0])])
    for word in words:
        parser = next(a for a in parser._actions
                      if isinstance(a, argparse._SubParsersAction)).choices[word]
    return parser


def _option(parser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


def _sources_with(pattern: str) -> list[str]:
    """Return the package's modules (relative paths) whose source matches ``pattern``."""
    return sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob('*.py')
                  if re.search(pattern, p.read_text()))


def test_edge_and_host_share_one_spec_of_their_common_parameters():
    for shared in TARGET_PARAMS + FEATURES_QOS_PARAMS:
        assert _spec(EDGE_PARAMS, shared.name) is shared
        assert _spec(host_node.HOST_PARAMS, shared.name) is shared


def test_node_parameters_take_choices_defaults_and_ranges_from_the_core():
    assert _spec(TARGET_PARAMS, 'model').default == models.DEFAULT_MODEL
    assert tuple(_spec(EDGE_PARAMS, 'codec').choices) == wire.CODECS + (edge_common.AUTO,)
    assert tuple(_spec(EDGE_PARAMS, 'codecs').choices) == wire.CODECS
    assert _spec(EDGE_PARAMS, 'codecs').default == list(wire.CODECS)
    assert _spec(EDGE_PARAMS, 'max_accuracy_drop').default == planner.DEFAULT_MAX_ACCURACY_DROP
    assert tuple(_spec(EDGE_PARAMS, 'defense').choices) == defenses.defense_names()
    for name in ('uplink_mbps', 'downlink_mbps', 'rtt_ms'):
        assert _spec(EDGE_PARAMS, name).default == getattr(LINK, name)
    for name in ('quality', 'frame_quality'):
        assert tuple(_spec(EDGE_PARAMS, name).range) == wire.QUALITY_RANGE


@pytest.mark.parametrize('words', [('eval',), ('plan',), ('profile',), ('bench', 'codecs'),
                                   ('train', 'host-finetune')])
def test_model_options_default_to_the_default_model(words):
    assert _option(_command(*words), '--model').default == models.DEFAULT_MODEL


def test_cli_link_defaults_and_choices_come_from_their_owners():
    plan = _command('plan')
    assert _option(plan, '--uplink-mbps').default == LINK.uplink_mbps
    assert _option(plan, '--downlink-mbps').default == LINK.downlink_mbps
    assert _option(plan, '--rtt-ms').default == LINK.rtt_ms
    assert _option(plan, '--result-bytes').default == LINK.result_bytes
    demo = _command('demo')
    assert tuple(_option(demo, '--defense').choices) == defenses.defense_names()
    with pytest.raises(SystemExit):
        demo.parse_args(['--quality', str(wire.QUALITY_RANGE[1] + 1)])


@pytest.mark.parametrize('words', [('plan',), ('profile',)])
def test_plan_and_profile_cost_jpeg_at_the_qualities_the_edge_node_sends(words):
    # plan shows the choice the node makes: the same JPEG qualities by default
    command = _command(*words)
    for flag, param in (('--quality', 'quality'), ('--frame-quality', 'frame_quality')):
        assert _option(command, flag).default == _spec(EDGE_PARAMS, param).default, flag


def test_one_frame_validation_and_one_accuracy_loop():
    assert conversions.check_frame is data.check_frame
    assert _sources_with(r'argmax\(1\)\s*==') == ['core/evaluation.py']


def test_names_of_the_defaults_are_spelled_by_their_owners_alone():
    assert _sources_with(r"'small_resnet'") == ['core/models.py']
    assert _sources_with(r"'raw', 'lossless', 'q8', 'jpeg'") == ['core/wire.py']
    assert _sources_with(r"'none', 'dunet'") == []
