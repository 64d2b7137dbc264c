"""Sample writers: the PNG grid, the text file and the WAV files read back as what was written."""

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional as AF
from PIL import Image

from benchmarks.samples import write_image_grid, write_text, write_wav


def test_image_grid_reads_back_pixel_exact(tmp_path):
    samples = torch.randint(0, 256, (5, 4 * 3 * 3))
    path = write_image_grid(samples, tmp_path / "out" / "grid.png", image_shape=(4, 3, 3), columns=3, padding=1)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        grid = np.asarray(image)
    assert grid.shape == (2 * 4 + 3, 3 * 3 + 4, 3)
    images = samples.view(5, 4, 3, 3).numpy()
    np.testing.assert_array_equal(grid[1:5, 1:4], images[0])  # raster order, channels interleaved
    np.testing.assert_array_equal(grid[6:10, 5:8], images[4])  # second row, second column
    assert (grid[0] == 255).all() and (grid[5:6, 9:] == 255).all()


def test_cifar_grid_default_shape(tmp_path):
    path = write_image_grid(torch.randint(0, 256, (4, 3072)), tmp_path / "cifar.png", padding=0)
    with Image.open(path) as image:
        assert image.size == (64, 64)


def test_text_reads_back_with_invalid_bytes_replaced(tmp_path):
    samples = torch.tensor([list(b"hello, world"), [0xFF, 0xFE] + list(b"abcdefghij")])
    text = write_text(samples, tmp_path / "enwik8.txt").read_text(encoding="utf-8")
    assert "===== sample 0 (12 bytes) =====\nhello, world\n" in text
    assert "\ufffd\ufffdabcdefghij" in text and "===== sample 1" in text


def test_wav_is_mu_law_decoded_at_12_khz(tmp_path):
    samples = torch.randint(0, 256, (2, 1200))
    paths = write_wav(samples, tmp_path / "music.wav")
    assert [p.name for p in paths] == ["music_000.wav", "music_001.wav"]
    data, rate = soundfile.read(paths[1])
    info = soundfile.info(paths[1])
    assert rate == 12_000 and info.channels == 1 and info.subtype == "PCM_16" and len(data) == 1200
    expected = AF.mu_law_decoding(samples[1], quantization_channels=256).numpy()
    np.testing.assert_allclose(data, expected, atol=1 / 2**15 + 1e-6)
    assert write_wav(samples[0], tmp_path / "one.wav") == [tmp_path / "one.wav"]


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda p: write_image_grid(torch.zeros(2, 10, dtype=torch.long), p / "a.png"), ValueError, "needs 3072"),
        (lambda p: write_text(torch.full((1, 3), 256), p / "a.txt"), ValueError, "0..255"),
        (lambda p: write_text(torch.zeros(1, 3), p / "a.txt"), TypeError, "integer"),
        (lambda p: write_wav(torch.zeros(1, 3, dtype=torch.long), p / "a.mp3"), ValueError, ".wav"),
        (lambda p: write_wav(torch.zeros(0, 3, dtype=torch.long), p / "a.wav"), ValueError, "non-empty"),
    ],
)
def test_bad_samples_are_refused(tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(tmp_path)
    assert not any(tmp_path.iterdir())
