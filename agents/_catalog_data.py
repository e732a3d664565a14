"""The built-in model catalog, as data: one row per model. Nothing here does IO.

Prices are USD per million tokens, written as text so they convert exactly (see
`agents.pricing`); they are the vendors' published list prices (standard tier; for
tiered prices the lowest tier, e.g. Gemini 2.5 Pro up to 200k tokens of prompt) at the
time of writing. A team whose contract differs, or that uses a model not listed here,
puts it in its catalog file (TURNLOG_MODEL_CATALOG): an entry there replaces a built-in
one of the same name.

Columns: name, provider (the named endpoint that serves it by default, see
`agents.providers.endpoints`), input, output, cache read, cache write (USD/Mtok),
context window, max output tokens, capabilities ("t" tools, "v" vision, "k" thinking).

Cache writes: Anthropic bills them (1.25x input for the 5-minute cache); OpenAI, Gemini,
DeepSeek and xAI cache automatically and bill no write premium, so their write price is
the input price. Reasoning tokens are billed at the output price by every vendor listed
(the `reasoning` column of a catalog file may say otherwise).
"""

from __future__ import annotations

__all__ = ["ALIASES", "ROWS"]

Row = tuple[str, str, str, str, str, str, int, int, str]

ROWS: tuple[Row, ...] = (
    # name                   provider     input   output  c.read  c.write  window     max out  caps
    ("claude-opus-4-5", "anthropic", "5", "25", "0.50", "6.25", 200_000, 64_000, "tvk"),
    ("claude-opus-4-1", "anthropic", "15", "75", "1.50", "18.75", 200_000, 32_000, "tvk"),
    ("claude-opus-4-0", "anthropic", "15", "75", "1.50", "18.75", 200_000, 32_000, "tvk"),
    ("claude-sonnet-4-5", "anthropic", "3", "15", "0.30", "3.75", 200_000, 64_000, "tvk"),
    ("claude-sonnet-4-0", "anthropic", "3", "15", "0.30", "3.75", 200_000, 64_000, "tvk"),
    ("claude-3-7-sonnet", "anthropic", "3", "15", "0.30", "3.75", 200_000, 64_000, "tvk"),
    ("claude-haiku-4-5", "anthropic", "1", "5", "0.10", "1.25", 200_000, 64_000, "tvk"),
    ("claude-3-5-haiku", "anthropic", "0.80", "4", "0.08", "1", 200_000, 8_192, "t"),
    ("claude-3-haiku", "anthropic", "0.25", "1.25", "0.03", "0.30", 200_000, 4_096, "tv"),
    # OpenAI (Chat Completions). The o-series and gpt-5 think (reasoning tokens).
    ("gpt-5", "openai", "1.25", "10", "0.125", "1.25", 400_000, 128_000, "tvk"),
    ("gpt-5-mini", "openai", "0.25", "2", "0.025", "0.25", 400_000, 128_000, "tvk"),
    ("gpt-5-nano", "openai", "0.05", "0.40", "0.005", "0.05", 400_000, 128_000, "tvk"),
    ("gpt-4.1", "openai", "2", "8", "0.50", "2", 1_047_576, 32_768, "tv"),
    ("gpt-4.1-mini", "openai", "0.40", "1.60", "0.10", "0.40", 1_047_576, 32_768, "tv"),
    ("gpt-4.1-nano", "openai", "0.10", "0.40", "0.025", "0.10", 1_047_576, 32_768, "tv"),
    ("gpt-4o", "openai", "2.50", "10", "1.25", "2.50", 128_000, 16_384, "tv"),
    ("gpt-4o-mini", "openai", "0.15", "0.60", "0.075", "0.15", 128_000, 16_384, "tv"),
    ("o3", "openai", "2", "8", "0.50", "2", 200_000, 100_000, "tvk"),
    ("o4-mini", "openai", "1.10", "4.40", "0.275", "1.10", 200_000, 100_000, "tvk"),
    # Google Gemini (Developer API).
    ("gemini-2.5-pro", "gemini", "1.25", "10", "0.125", "1.25", 1_048_576, 65_536, "tvk"),
    ("gemini-2.5-flash", "gemini", "0.30", "2.50", "0.03", "0.30", 1_048_576, 65_536, "tvk"),
    ("gemini-2.5-flash-lite", "gemini", "0.10", "0.40", "0.01", "0.10", 1_048_576, 65_536, "tvk"),
    ("gemini-2.0-flash", "gemini", "0.10", "0.40", "0.025", "0.10", 1_048_576, 8_192, "tv"),
    # Open and other hosted models behind OpenAI-compatible endpoints.
    ("deepseek-chat", "deepseek", "0.28", "0.42", "0.028", "0.28", 128_000, 8_192, "t"),
    ("deepseek-reasoner", "deepseek", "0.28", "0.42", "0.028", "0.28", 128_000, 65_536, "tk"),
    ("mistral-large-latest", "mistral", "2", "6", "2", "2", 128_000, 32_768, "tv"),
    ("mistral-small-latest", "mistral", "0.10", "0.30", "0.10", "0.10", 128_000, 32_768, "tv"),
    ("grok-4", "xai", "3", "15", "0.75", "3", 256_000, 64_000, "tvk"),
    ("grok-3-mini", "xai", "0.30", "0.50", "0.075", "0.30", 131_072, 32_768, "tk"),
    ("llama-3.3-70b-versatile", "groq", "0.59", "0.79", "0.59", "0.59", 131_072, 32_768, "t"),
    ("openai/gpt-oss-120b", "groq", "0.15", "0.75", "0.15", "0.15", 131_072, 65_536, "tk"),
    # Local models (Ollama's names): no bill.
    ("llama3.1:8b", "ollama", "0", "0", "0", "0", 131_072, 8_192, "t"),
    ("qwen3:8b", "ollama", "0", "0", "0", "0", 40_960, 8_192, "tk"),
)

# Other names the vendors' APIs accept for the same model.
ALIASES: dict[str, str] = {
    "claude-opus-4": "claude-opus-4-0",
    "claude-sonnet-4": "claude-sonnet-4-0",
    "claude-opus-4-1-latest": "claude-opus-4-1",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet",
    "claude-3-5-haiku-latest": "claude-3-5-haiku",
    "chatgpt-4o-latest": "gpt-4o",
}
