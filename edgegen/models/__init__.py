"""The models shipped inside the package (built by the scripts under examples/)."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE / "default"  # the small MARS chat model
RAG_GENERATOR = HERE / "rag" / "generator"  # the default model fine-tuned to answer from evidence, latent inputs
RAG_COMPRESSOR = HERE / "rag" / "compressor"  # its latent-memory compressor
