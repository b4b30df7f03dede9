"""The embedding model through onnxruntime: the fast path for queries and small batches.

sentence-transformers spends about 12 ms of framework overhead per single
query on this kind of CPU; the same MiniLM graph through onnxruntime takes a
few ms. The graph is exported once from the local weights with
`torch.onnx.export` (no download, no `optimum`) and cached on disk beside the
store; pooling (mean over the attention mask) and L2 normalisation follow
sentence-transformers exactly, so vectors match the torch path to float
precision and one collection can mix both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rag.answer.match import Tokens

log = logging.getLogger(__name__)

_EXPORT_LOCK = threading.Lock()


def _fingerprint(model_path: str) -> str:
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json"):
        p = Path(model_path) / name
        if p.exists():
            st = p.stat()
            h.update(f"{name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:12]


def export_onnx(model_path: str, target: Path) -> Path:
    """Export the transformer of a sentence-transformers model directory to ONNX."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local weights only, never the hub
    import torch
    from transformers import AutoModel

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(model_path)

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            out = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    model = Encoder().eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = (
        torch.ones((2, 16), dtype=torch.long),
        torch.ones((2, 16), dtype=torch.long),
        torch.zeros((2, 16), dtype=torch.long),
    )
    axes = {0: "batch", 1: "tokens"}
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    with torch.no_grad():
        torch.onnx.export(
            model,
            sample,
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={**dict.fromkeys(names, axes), "last_hidden_state": axes},
            opset_version=17,
            dynamo=False,
        )
    tmp.replace(target)  # readers never see a half-written file
    return target


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantization of the exported graph's weights, per output channel.

    Per-channel keeps vectors within cosine 0.985 of fp32 on the sample's chunks
    (per-tensor is reported to drift to about 0.93). reduce_range (7-bit
    weights) avoids the saturation of the u8 x s8 multiply-add that AVX2 CPUs
    without VNNI use.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    quantize_dynamic(
        str(source),
        str(tmp),
        per_channel=True,
        reduce_range=True,
        weight_type=QuantType.QInt8,
    )
    tmp.replace(target)
    return target


class OnnxEncoder:
    """Unit vectors for texts, like `SentenceTransformer.encode(normalize_embeddings=True)`.

    `int8` runs the dynamically quantized graph: about 1.3x the texts/s of fp32 on
    an AVX2 CPU, for bulk embedding (ingest); queries stay in fp32.

    Texts run in forward passes of `batch_size` texts of similar length. Small
    passes are faster per text on a small CPU (less padding, activations stay in
    cache): on a 2-core AVX2 machine the sample's chunks embedded at 37.4 texts/s
    in passes of 8 against 26.8 in passes of 64 (`python -m evals.bench.embed`).
    """

    def __init__(
        self,
        model_path: str,
        cache_dir: Path,
        threads: int | None = None,
        *,
        int8: bool = False,
        spin_wait: bool = False,
    ) -> None:
        self.model_path = model_path
        self.spin_wait = spin_wait
        self.cache_dir = cache_dir
        self.threads = threads or os.cpu_count() or 1
        self.int8 = int8
        self._session = None
        self._tokenizer = None

    @property
    def fp32_path(self) -> Path:
        return self.cache_dir / f"minilm-{_fingerprint(self.model_path)}.onnx"

    @property
    def onnx_path(self) -> Path:
        if self.int8:
            return self.fp32_path.with_name(self.fp32_path.stem + "-int8pc.onnx")
        return self.fp32_path

    def load(self) -> OnnxEncoder:
        if self._session is not None:
            return self
        with _EXPORT_LOCK:
            if self._session is not None:
                return self
            import onnxruntime as ort
            from tokenizers import Tokenizer

            path = self.onnx_path
            if not self.fp32_path.exists():
                self.fp32_path.parent.mkdir(parents=True, exist_ok=True)
                log.info("exporting the embedding model to ONNX at %s (once)", self.fp32_path)
                export_onnx(self.model_path, self.fp32_path)
            if not path.exists():
                log.info("quantizing the ONNX graph to int8 at %s (once)", path)
                quantize_int8(self.fp32_path, path)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            # Spinning threads wait for work by burning a core: a few per cent faster
            # alone, several times slower when other jobs share the cores.
            opts.add_session_config_entry(
                "session.intra_op.allow_spinning", "1" if self.spin_wait else "0"
            )
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
            max_len = 256
            cfg = Path(self.model_path) / "sentence_bert_config.json"
            if cfg.exists():
                max_len = int(json.loads(cfg.read_text()).get("max_seq_length", max_len))
            tok = Tokenizer.from_file(str(Path(self.model_path) / "tokenizer.json"))
            tok.enable_truncation(max_length=max_len)
            tok.enable_padding(pad_id=0, pad_token="[PAD]")
            self._inputs = {i.name for i in session.get_inputs()}
            self._tokenizer = tok
            self._session = session
            self.encode(["warm up"])  # the first run pays one-off set-up costs: pay them here
        return self

    def _passes(
        self, texts: list[str], batch_size: int
    ) -> Iterator[tuple[list[int], np.ndarray, np.ndarray, list[Any]]]:
        """Forward passes over `texts` in batches of similar length (like
        sentence-transformers, so little is padding): each pass's text indexes, last
        hidden states, attention mask and tokenizer encodings."""
        self.load()
        assert self._tokenizer is not None and self._session is not None
        enc = self._tokenizer.encode_batch(texts)
        lengths = [sum(e.attention_mask) for e in enc]
        order = sorted(range(len(enc)), key=lengths.__getitem__)
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            width = max(lengths[i] for i in idx)
            ids = np.array([enc[i].ids[:width] for i in idx], dtype=np.int64)
            mask = np.array([enc[i].attention_mask[:width] for i in idx], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            (hidden,) = self._session.run(["last_hidden_state"], feed)
            yield idx, hidden, mask, [enc[i] for i in idx]

    def encode(self, texts: list[str], batch_size: int = 8) -> np.ndarray:
        return self.encode_with_tokens(texts, batch_size, tokens=False)[0]

    def encode_with_tokens(
        self, texts: list[str], batch_size: int = 8, *, tokens: bool = True
    ) -> tuple[np.ndarray, list[Tokens]]:
        """Unit vectors for `texts` and, from the same forward passes, their tokens
        (see `tokens`; an empty list when `tokens` is False)."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32), []
        out = np.empty((len(texts), 0), dtype=np.float32)
        toks: list[Tokens] = [Tokens.empty()] * len(texts) if tokens else []
        for idx, hidden, mask, encodings in self._passes(texts, batch_size):
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            if out.shape[1] == 0:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[idx] = pooled
            if tokens:
                for row, (i, e) in enumerate(zip(idx, encodings, strict=True)):
                    toks[i] = _tokens(hidden[row], e)
        return out, toks

    def tokens(self, texts: list[str], batch_size: int = 8) -> list[Tokens]:
        """Each text's tokens in context: unit vectors from the same forward pass
        as `encode` (before pooling), [CLS], [SEP] and padding left out, each with
        the character span of the word it is part of."""
        return self.encode_with_tokens(texts, batch_size)[1]


def _tokens(hidden: np.ndarray, e: Any) -> Tokens:
    keep = [j for j, w in enumerate(e.word_ids) if w is not None]
    return Tokens.of(hidden[keep], [e.word_ids[j] for j in keep], [e.offsets[j] for j in keep])
