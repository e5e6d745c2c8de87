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
Warnings that C libraries print, caught and handed to the caller instead.

libjpeg and libpng (inside OpenCV) print a line to the process's standard
error for each damaged image they patch up ("Corrupt JPEG data: premature end
of data segment"), unthrottled and out of reach of any logger. A decode runs
inside :func:`library_warnings`: file descriptor 2 points at a private file
for that time, the library's lines come back as ``caught.lines`` (the caller
refuses the image, counts it, logs at its own pace), and any other line
written meanwhile (another thread's log) is written to the real standard
error afterwards, unchanged. One decode at a time holds the redirection.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Iterator

# Lines the image libraries print (libjpeg's warning texts, libpng's prefixes, OpenCV's).
LIBRARY_LINE = re.compile(
    r'(Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters|Warning: |'
    r'Inconsistent progression sequence|Application transferred too (few|many)|'
    r'Unsupported marker type|Bogus |Huffman table|JPEG datastream|Not a JPEG file|'
    r'Unsupported JPEG|Corrupt JPEG|libpng (warning|error)|\[ ?WARN:|\[ ?ERROR:|'
    r'imread_|imdecode_)')
STDERR_FD = 2

_LOCK = threading.Lock()
_SINK: list = []  # the one private file, made on first use


@dataclass
class Caught:
    """The library lines caught during one :func:`library_warnings` block."""

    lines: list[str] = field(default_factory=list)

    @property
    def first(self) -> str | None:
        """Return the first caught line, or None."""
        return self.lines[0] if self.lines else None


@contextlib.contextmanager
def library_warnings() -> Iterator[Caught]:
    """Catch what C libraries print on file descriptor 2 during the block."""
    caught = Caught()
    with _LOCK:
        if not _SINK:
            _SINK.append(tempfile.TemporaryFile())
        sink = _SINK[0]
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        saved = os.dup(STDERR_FD)
        os.dup2(sink.fileno(), STDERR_FD)
        try:
            yield caught
        finally:
            os.dup2(saved, STDERR_FD)
            os.close(saved)
            size = os.fstat(sink.fileno()).st_size
            if size:
                os.lseek(sink.fileno(), 0, os.SEEK_SET)
                text = os.read(sink.fileno(), size)
                os.ftruncate(sink.fileno(), 0)
                os.lseek(sink.fileno(), 0, os.SEEK_SET)
                _sort(text, caught)


def _sort(text: bytes, caught: Caught) -> None:
    """Keep the library's lines in ``caught``; write every other line to standard error."""
    others = []
    for line in text.decode('utf-8', 'replace').splitlines(keepends=True):
        if LIBRARY_LINE.match(line.strip()):
            caught.lines.append(' '.join(line.split())[:200])
        else:
            others.append(line)
    if others:
        data = ''.join(others).encode('utf-8', 'replace')
        while data:
            data = data[os.write(STDERR_FD, data):]
