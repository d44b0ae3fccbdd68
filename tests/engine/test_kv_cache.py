"""KV cache bookkeeping (reference layout) and endless rolling streams."""

from __future__ import annotations

import resource
import time

import torch

from engine.config import CacheConfig, DiTConfig, SamplerConfig
from engine.kv_cache import CacheFullError, KVCache
from engine.model.dit import CausalDiT
from engine.model.rope import apply_rope, rope_angles, rope_rotation
from engine.rollout import generate_chunk
from engine.sampler import FlowMatchSchedule

TPF = 2  # tokens per frame in the bookkeeping tests


def tagged(cache: KVCache, start_frame: int, frames: int) -> None:
    """Write a chunk whose keys carry their absolute frame index."""
    plan = cache.plan_write(start_frame * TPF, frames * TPF)
    k = torch.arange(start_frame, start_frame + frames).repeat_interleave(TPF).float().view(1, -1, 1, 1)
    cache.write(0, plan, k, k)


def frames_in(cache: KVCache) -> list[int]:
    return cache.k[0][0, : cache.local_end, 0, 0][::TPF].long().tolist()


def make(mode: str, max_frames: int, sink: int) -> KVCache:
    cfg = CacheConfig(mode=mode, max_frames=max_frames, sink_frames=sink)  # type: ignore[arg-type]
    return KVCache(cfg, num_layers=1, tokens_per_frame=TPF, heads=1, head_dim=1)


def test_rolling_layout_matches_reference_rule() -> None:
    # reference C: cache 9 frames, sink 3, chunks of 3: block 3 evicts frames 3-5, block 4 frames 6-8
    cache = make("rolling", 9, 3)
    for b in range(5):
        for _ in range(5):  # 4 denoising passes + refresh rewrite the same slots
            tagged(cache, 3 * b, 3)
    assert frames_in(cache) == [0, 1, 2, 9, 10, 11, 12, 13, 14]
    assert cache.global_end == 15 * TPF and cache.local_end == 9 * TPF


def test_rolling_without_sink_and_partial_chunks() -> None:
    cache = make("rolling", 5, 0)
    for b in range(4):
        tagged(cache, 3 * b, 3)
    assert frames_in(cache) == [7, 8, 9, 10, 11]


def test_global_cache_refuses_past_its_length() -> None:
    cache = make("global", 6, 0)
    tagged(cache, 0, 3)
    tagged(cache, 3, 3)
    try:
        tagged(cache, 6, 3)
    except CacheFullError:
        pass
    else:  # pragma: no cover
        raise AssertionError("a full global cache accepted another chunk")


def test_chunks_must_continue_the_stream() -> None:
    cache = make("rolling", 9, 3)
    tagged(cache, 0, 3)
    try:
        tagged(cache, 6, 3)  # skips frames 3-5
    except ValueError:
        pass
    else:  # pragma: no cover
        raise AssertionError("a gap in the stream was accepted")


def test_rope_has_no_position_limit_and_keeps_precision() -> None:
    """Scores depend only on relative positions, also 10^4..10^6 frames into a stream."""
    head_dim = 64
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 6, 2, head_dim, generator=gen)
    k = torch.randn(1, 6, 2, head_dim, generator=gen)

    def score(q_frame: int, k_frame: int) -> torch.Tensor:
        rq = rope_rotation(rope_angles(head_dim, torch.tensor([q_frame]), 2, 3)).unsqueeze(0)
        rk = rope_rotation(rope_angles(head_dim, torch.tensor([k_frame]), 2, 3)).unsqueeze(0)
        return torch.einsum("blhd,bmhd->bhlm", apply_rope(q, rq), apply_rope(k, rk))

    near = score(5, 2)
    for offset in (1024, 10_000, 1_000_000):
        far = score(offset + 5, offset + 2)
        assert torch.allclose(far, near, atol=2e-5, rtol=1e-5), offset
    # the table the reference uses ends at 1023; positions beyond must still differ from 0
    assert not torch.allclose(score(1030, 2), near)


def test_rolling_stream_of_10000_frames_is_flat_in_time_and_memory() -> None:
    """10,002 latent frames through the real DiT + cache: no crash, flat time, fixed memory."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # micro tensors: one thread avoids spin-wait overhead on a busy machine
    try:
        _stream_10000_frames()
    finally:
        torch.set_num_threads(threads)


def _stream_10000_frames() -> None:
    torch.manual_seed(0)
    dit = CausalDiT(DiTConfig(text_len=4, dim=16, ffn_dim=32, text_dim=8, num_heads=2, num_layers=1)).eval()
    schedule = FlowMatchSchedule(SamplerConfig(denoising_steps=(1000,)))
    cache = KVCache(
        CacheConfig(mode="rolling", max_frames=9, sink_frames=3),
        num_layers=1,
        tokens_per_frame=1,
        heads=2,
        head_dim=8,
    )
    buffers = [t.data_ptr() for t in (*cache.k, *cache.v)]
    prompt = dit.encode_prompt(torch.randn(1, 4, 8))
    chunks = 3334
    times = []
    rss_start = 0
    for c in range(chunks):
        noise = torch.randn(1, 3, 16, 2, 2)
        t0 = time.thread_time()  # CPU time: robust to other load on the machine
        x0 = generate_chunk(dit, schedule, prompt, [cache], [3 * c], noise, lambda k, s: torch.randn(s))
        times.append(time.thread_time() - t0)
        assert torch.isfinite(x0).all()
        if c == 200:
            rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert cache.global_end == 3 * chunks
    assert cache.local_end == 9
    assert [t.data_ptr() for t in (*cache.k, *cache.v)] == buffers  # no reallocation
    early = sorted(times[100:600])[250]  # medians of 500 chunks, after warm-up
    late = sorted(times[-500:])[250]
    assert late < 1.6 * early + 2e-4, f"chunk time grew from {early * 1e3:.2f} ms to {late * 1e3:.2f} ms"
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_start
    assert grown_kib < 50_000, f"resident memory grew by {grown_kib} KiB"


def _constant_stream(rope_positions: str, chunks: int) -> list[torch.Tensor]:
    """Feed the same noise and prompt every chunk; return each chunk's x0."""
    torch.manual_seed(0)
    dit = CausalDiT(DiTConfig(text_len=4, dim=16, ffn_dim=32, text_dim=8, num_heads=2, num_layers=2)).eval()
    schedule = FlowMatchSchedule(SamplerConfig(denoising_steps=(1000, 500)))
    cfg = CacheConfig(mode="rolling", max_frames=9, sink_frames=3, rope_positions=rope_positions)  # type: ignore[arg-type]
    cache = KVCache(cfg, num_layers=2, tokens_per_frame=2, heads=2, head_dim=8, grid=(1, 2))
    prompt = dit.encode_prompt(torch.randn(1, 4, 8))
    noise, eps = torch.randn(1, 3, 16, 2, 4), torch.randn(1, 3, 16, 2, 4)
    return [
        generate_chunk(dit, schedule, prompt, [cache], [3 * c], noise, lambda k, s: eps)
        for c in range(chunks)
    ]


def test_window_positions_make_a_rolling_stream_stationary() -> None:
    """With window positions, chunk 300 sees exactly what chunk 30 saw; with absolute ones not."""
    window = _constant_stream("window", 301)
    torch.testing.assert_close(window[300], window[30], atol=1e-5, rtol=1e-5)
    absolute = _constant_stream("absolute", 301)
    assert (absolute[300] - absolute[30]).abs().max() > 1e-3
    # before the first eviction both modes are the same computation
    torch.testing.assert_close(window[2], absolute[2])


def test_window_positions_survive_snapshots() -> None:
    cfg = CacheConfig(mode="rolling", max_frames=9, sink_frames=3, rope_positions="window")
    a = KVCache(cfg, num_layers=1, tokens_per_frame=2, heads=1, head_dim=8, grid=(1, 2))
    plan = a.plan_write(0, 6)
    a.write(0, plan, torch.randn(1, 6, 1, 8), torch.randn(1, 6, 1, 8), torch.randn(1, 6, 1, 8))
    b = KVCache(cfg, num_layers=1, tokens_per_frame=2, heads=1, head_dim=8, grid=(1, 2))
    b.load_state(a.state())
    assert torch.equal(a.sink_raw[0], b.sink_raw[0]) and b.local_end == a.local_end
