"""Realistic random gallery embeddings, for search tests and the gallery benchmark.

Independent noise vectors are a poor stand-in for a gallery: every pair is at the same distance, so
no index can search them and recall numbers mean nothing. Embeddings of a trained network instead
(1) form one cluster per identity, with several noisy sequences each, (2) live near a low-dimensional
subspace of the ``D*P`` space, and (3) are L2-normalised per strip. :class:`EmbeddingSimulator`
draws such vectors: identity codes in a ``latent``-dimensional space, mapped to ``(D, P)`` by one
fixed random linear map, plus per-sequence latent noise and small isotropic noise, normalised per
strip. Everything is a pure function of the seed, so any chunk can be regenerated on demand.
"""

from __future__ import annotations

import numpy as np


def normalise_strips(x: np.ndarray) -> np.ndarray:
    """L2-normalise (n, D, P) embeddings per strip (over D), as the model's retrieval embedding is."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class EmbeddingSimulator:
    """Clustered, per-strip-normalised (D, P) embeddings.

    Args:
        dim: D.
        parts: P.
        latent: dimension of the identity space.
        sequence_noise: std of a sequence's latent offset from its identity (identity spread is 1).
        isotropic_noise: std of independent noise per embedding value (signal std per value is 1).
        seed: seed of the linear map and of every identity / sequence draw.
    """

    def __init__(self, dim: int = 256, parts: int = 16, latent: int = 64, sequence_noise: float = 0.35,
                 isotropic_noise: float = 0.5, seed: int = 0) -> None:
        self.dim, self.parts, self.latent = dim, parts, latent
        self.sequence_noise, self.isotropic_noise, self.seed = sequence_noise, isotropic_noise, seed
        rng = np.random.default_rng([seed, 0])
        self.mixing = rng.standard_normal((latent, dim * parts), dtype=np.float32) / np.sqrt(latent)
        # Isotropic noise as signed sums of two rows of a fixed pool: drawing 4,096 fresh normals per
        # embedding dominates the cost of a million-row gallery, and pooled noise ranks the same.
        self._pool = rng.standard_normal((2048, dim * parts), dtype=np.float32) / np.sqrt(2.0)

    def identity_codes(self, identities: np.ndarray) -> np.ndarray:
        """(n,) identity numbers -> (n, latent) codes, the same code for the same number."""
        unique, inverse = np.unique(identities, return_inverse=True)
        codes = np.stack([np.random.default_rng([self.seed, 1, int(i)]).standard_normal(self.latent, dtype=np.float32)
                          for i in unique])
        return codes[inverse.reshape(-1)]

    def sequences(self, identities: np.ndarray, stream: int, block: int = 512) -> np.ndarray:
        """One new sequence embedding per entry of ``identities``; ``stream`` picks the noise draw.

        Returns:
            (n, D, P) float32, per-strip L2-normalised.
        """
        rng = np.random.default_rng([self.seed, 2, stream])
        codes = self.identity_codes(identities)
        codes += self.sequence_noise * rng.standard_normal(codes.shape, dtype=np.float32)
        pick = rng.integers(0, len(self._pool), (len(codes), 2))
        signs = rng.choice(np.array([-1.0, 1.0], np.float32), (len(codes), 2, 1)) * self.isotropic_noise
        out = np.empty((len(codes), self.dim, self.parts), dtype=np.float32)
        for s in range(0, len(codes), block):  # block by block, so each block stays in cache
            e = min(len(codes), s + block)
            flat = codes[s:e] @ self.mixing
            flat += signs[s:e, 0] * self._pool[pick[s:e, 0]]
            flat += signs[s:e, 1] * self._pool[pick[s:e, 1]]
            out[s:e] = normalise_strips(flat.reshape(e - s, self.dim, self.parts))
        return out

    def gallery_chunk(self, start: int, stop: int, per_identity: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start:stop`` of a gallery where identity ``i`` owns rows ``i*per_identity ...``.

        Returns:
            identity numbers (n,) int64 and embeddings (n, D, P).
        """
        rows = np.arange(start, stop, dtype=np.int64)
        identities = rows // per_identity
        return identities, self.sequences(identities, stream=start)
