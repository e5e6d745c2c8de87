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

"""Every figure in the README's results comes from a committed docs/results/*.json."""

import copy
import difflib
import json
import re
from pathlib import Path

import pytest

from edge_denoise_ros import cli
from edge_denoise_ros.commands import provenance
from edge_denoise_ros.harness import results

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
RESULTS = ROOT / 'docs' / 'results'

# The README sections in which every number must come from a result file.
CHECKED_SECTIONS = ('## Results', '## Limitations, and what did not work',
                    '## Tests and ROS isolation')
# Names that carry a number but are no figure, and inline code (commands and their arguments).
NAMES = re.compile(r'ROS 2\b|`[^`]*`')
# A number as the README writes it: 10,000 or 0.85 or 2.14.1; not part of a name (p99,
# layer1, back3.0, plan_2mbps).
NUMBER = re.compile(r'(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)*(?!\w)')
# Scales a figure may be shown at: as is, a fraction as a percentage, seconds as ms.
SCALES = (1, 100, 1000)


def _section(text: str, title: str) -> str:
    start = text.index(title + '\n')
    end = text.find('\n## ', start + len(title))
    return text[start:end if end >= 0 else len(text)]


def _leaves(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _leaves(v)
    elif isinstance(node, list):
        for v in node:
            yield from _leaves(v)
    else:
        yield node


def _sourced():
    """Every way the result files let a figure be written, and their strings."""
    shown, strings = set(), []
    for data in results.load_results(RESULTS).values():
        for leaf in _leaves(data):
            if isinstance(leaf, str):
                strings.append(leaf)
                values = [float(m.group()) for m in re.finditer(r'\d+(?:\.\d+)?', leaf)]
            elif isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
                values = [float(leaf)]
            else:
                continue
            for v in values:
                for scale in SCALES:
                    shown.update(f'{abs(v * scale):.{d}f}' for d in range(4))
    return shown, '\n'.join(strings)


def test_readme_result_blocks_match_their_files():
    text = README.read_text()
    rendered = results.render_readme(text, results.load_results(RESULTS))
    diff = ''.join(difflib.unified_diff(text.splitlines(True), rendered.splitlines(True),
                                        'README.md', 'rendered from docs/results', n=1))
    assert rendered == text, f'README figures differ from docs/results; run make results\n{diff}'


def test_every_block_is_in_the_readme_once():
    found = results.OPEN.findall(README.read_text())
    assert sorted(found) == sorted(results.BLOCKS)


def test_every_number_in_the_results_comes_from_a_result_file():
    shown, strings = _sourced()
    text = README.read_text()
    missing = []
    for title in CHECKED_SECTIONS:
        section = NAMES.sub('', _section(text, title))
        for m in NUMBER.finditer(section):
            before = section[max(m.start() - 2, 0):m.start()]
            if len(before) == 2 and before[1] == '-' and before[0].isalnum():
                continue   # a name: ResNet-50, VGG-19, zstd-3
            token = m.group().replace(',', '')
            ok = token in strings if token.count('.') > 1 else token in shown
            if not ok:
                context = section[max(m.start() - 40, 0):m.end() + 20].replace('\n', ' ')
                missing.append(f'{title}: {m.group()!r} in "...{context}..."')
    assert not missing, 'README figures found in no docs/results file:\n' + '\n'.join(missing)


@pytest.mark.parametrize('path', sorted(RESULTS.glob('*.json')), ids=lambda p: p.name)
def test_every_result_file_records_command_commit_and_machine(path):
    record = json.loads(path.read_text())['provenance']
    assert record['command'].startswith('edge-denoise ')
    assert record['machine'] and isinstance(record['machine'], dict)
    assert re.fullmatch(r'[0-9a-f]{40}', record['commit'] or ''), record['commit']
    if 'recorded' not in record:   # measured with provenance: a clean checkout, a known machine
        assert record['dirty'] is False
        assert {'platform', 'python', 'torch', 'cpu_count'} <= set(record['machine'])


def test_a_changed_figure_shows_in_the_rendered_readme():
    data = results.load_results(RESULTS)
    changed = copy.deepcopy(data)
    raw = next(r for r in changed['link']['rows'] if r['strategy'] == 'raw')
    raw['link_dropped_packets'] = 19756
    text = README.read_text()
    assert '19,756' not in text
    assert '19,756' in results.render_readme(text, changed)
    assert results.render_readme(text, data) == text


def test_bad_markers_and_missing_files_are_refused():
    good = '<!-- results:machine -->x<!-- /results:machine -->'
    with pytest.raises(ValueError, match='pair up'):
        results.render_readme('<!-- results:machine -->\n', {})
    with pytest.raises(ValueError, match='unknown result block'):
        results.render_readme('<!-- results:nope -->\n<!-- /results:nope -->', {})
    with pytest.raises(ValueError, match='eval.json is missing'):
        results.render_readme(good, {})


def test_wrap_fills_prose_and_keeps_tables():
    prose = ' '.join(['word'] * 40)
    table = '| a | b |\n|---|---|\n| ' + 'x' * 120 + ' | y |'
    out = results.wrap(prose + '\n\n' + table, width=30)
    assert all(len(line) <= 30 for line in out.split('\n\n')[0].splitlines())
    assert out.endswith(table)


def test_provenance_outside_a_git_checkout_is_none_and_never_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, 'SOURCE_ROOT', tmp_path)
    assert provenance.source_commit() == {'commit': None, 'dirty': None}
    record = provenance.provenance(['eval', '--limit', '10', '--json'], started=0.0)
    assert record['command'] == 'edge-denoise eval --limit 10 --json'
    assert record['commit'] is None and record['dirty'] is None
    assert record['machine']['cpu_count'] >= 1 and record['machine']['python']
    assert record['utc'].endswith('+00:00') and record['started_utc'].startswith('1970-01-01')


def test_machine_says_whether_a_hypervisor_takes_freed_memory_back(tmp_path):
    def device(name, kind, features):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'device').write_text(kind + '\n')
        (tmp_path / name / 'features').write_text(features + '\n')

    device('virtio0', '0x0001', '00000100' + '0' * 56)      # a network card: bit 5 is its own
    assert provenance.free_page_reporting(str(tmp_path)) is False
    device('virtio1', '0x0005', '01100001' + '0' * 56)      # a balloon without reporting
    assert provenance.free_page_reporting(str(tmp_path)) is False
    device('virtio2', '0x0005', '01100101' + '0' * 56)      # a balloon that reports free pages
    assert provenance.free_page_reporting(str(tmp_path)) is True
    assert provenance.free_page_reporting(str(tmp_path / 'none')) is False
    assert isinstance(provenance.machine()['free_page_reporting'], bool)


def test_provenance_names_this_checkout(monkeypatch):
    if not (ROOT / '.git').exists() or provenance.SOURCE_ROOT != ROOT:
        pytest.skip('not a git checkout of this package')
    record = provenance.source_commit()
    assert re.fullmatch(r'[0-9a-f]{40}', record['commit']) and isinstance(record['dirty'], bool)


def test_provenance_names_the_code_that_ran_not_what_was_committed_meanwhile(monkeypatch):
    at_start = {'commit': 'a' * 40, 'dirty': False}
    monkeypatch.setattr(provenance, 'source_commit', lambda: {'commit': 'b' * 40, 'dirty': False})
    record = provenance.provenance(['train', 'denoiser', '--json'], 0.0, at_start)
    assert record['commit'] == 'a' * 40 and record['source_changed'] is True
    record = provenance.provenance(['train', 'denoiser', '--json'], 0.0,
                                   {'commit': 'b' * 40, 'dirty': False})
    assert record['commit'] == 'b' * 40 and 'source_changed' not in record


def test_every_json_result_carries_its_provenance(capsys):
    assert cli.main(['macs', '--config', 'small', '--json']) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = result['provenance']
    assert record['command'] == 'edge-denoise macs --config small --json'
    assert set(record) >= {'commit', 'dirty', 'machine', 'utc', 'seconds'}
