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

"""Fashion-MNIST loading and camera-frame preprocessing."""

import gzip

import numpy as np
import pytest
import torch

from edge_denoise_ros.core import data


@pytest.fixture(scope='module')
def test_split():
    return data.load_fashion_mnist('test')


def test_test_split_shape_and_labels(test_split):
    images, labels = test_split
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert sorted(np.unique(labels).tolist()) == list(range(10))
    # Fashion-MNIST's test split is balanced: 1000 images per class.
    assert np.bincount(labels).tolist() == [1000] * 10


def test_train_split_shape():
    images, labels = data.load_fashion_mnist('train')
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)


def test_missing_dataset_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv('FASHION_MNIST_DIR', str(tmp_path))
    with pytest.raises(data.DatasetMissingError) as err:
        data.load_fashion_mnist('test')
    message = str(err.value)
    assert 'dataset-fashion-mnist' in message and '\n' not in message


def test_bad_split_is_a_value_error():
    with pytest.raises(ValueError, match='split'):
        data.load_fashion_mnist('validation')


def test_env_override_reads_another_folder(tmp_path, monkeypatch):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    labels = np.array([3, 7], dtype=np.uint8)
    header_i = bytes([0, 0, 8, 3]) + np.array([2, 28, 28], '>u4').tobytes()
    header_l = bytes([0, 0, 8, 1]) + np.array([2], '>u4').tobytes()
    with gzip.open(tmp_path / 't10k-images-idx3-ubyte.gz', 'wb') as f:
        f.write(header_i + images.tobytes())
    with gzip.open(tmp_path / 't10k-labels-idx1-ubyte.gz', 'wb') as f:
        f.write(header_l + labels.tobytes())
    monkeypatch.setenv('FASHION_MNIST_DIR', str(tmp_path))
    got_images, got_labels = data.load_fashion_mnist('test')
    assert np.array_equal(got_images, images) and got_labels.tolist() == [3, 7]


def test_truncated_idx_file_is_rejected(tmp_path):
    path = tmp_path / 'bad.gz'
    with gzip.open(path, 'wb') as f:
        f.write(bytes([0, 0, 8, 3]) + np.array([2, 28, 28], '>u4').tobytes() + b'\x00' * 10)
    with pytest.raises(ValueError, match='elements'):
        data.read_idx(path)


@pytest.mark.parametrize('encoding', ['bgr8', 'rgb8', 'mono8'])
def test_upscaled_sample_comes_back_exactly(test_split, encoding):
    images, _ = test_split
    for sample in images[:20]:
        frame = data.sample_to_frame(sample, size=224, encoding=encoding)
        assert frame.shape[:2] == (224, 224)
        x = data.preprocess_frame(frame, encoding)
        assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
        assert np.array_equal(data.to_uint8(x)[0], sample)
        assert torch.equal(x, data.to_tensor(sample[None]))


def test_any_frame_size_and_colour_order():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    x_bgr = data.preprocess_frame(bgr, 'bgr8')
    x_rgb = data.preprocess_frame(bgr[:, :, ::-1].copy(), 'rgb8')
    assert x_bgr.shape == (1, 1, 28, 28)
    assert torch.equal(x_bgr, x_rgb)
    assert 0.0 <= x_bgr.min() and x_bgr.max() <= 1.0


@pytest.mark.parametrize('frame,encoding', [
    (np.zeros((0, 10, 3), np.uint8), 'bgr8'),
    (np.zeros((10, 10), np.uint8), 'bgr8'),
    (np.zeros((10, 10, 3), np.uint8), 'mono8'),
    (np.zeros((10, 10, 3), np.uint16), 'bgr8'),
    (np.zeros((10, 10, 3), np.uint8), 'bgra8'),
])
def test_bad_frames_raise_value_error(frame, encoding):
    with pytest.raises(ValueError):
        data.preprocess_frame(frame, encoding)
