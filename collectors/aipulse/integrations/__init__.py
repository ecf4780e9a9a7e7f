"""Wrappers for model clients that emit interactions without changing how the app uses them.

    from aipulse.integrations.openai import instrument_openai
    from aipulse.integrations.anthropic import instrument_anthropic

    client = instrument_openai(openai.OpenAI(), feature="support-chat")
    client.chat.completions.create(model="gpt-4o", messages=[...])          # one interaction

Inside an ``aipulse.interaction(...)`` block the wrapped call does not emit its own event: it
adds its tokens (and model, provider, time to first token) to the enclosing interaction.
"""
