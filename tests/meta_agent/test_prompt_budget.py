"""What every meta-agent model call carries before the conversation: the system prompt and
the nine tool schemas. On a small local model each token is prompt processing on every turn
and a slice of a 2k-4k context, so the total has a budget.

Measure it (litellm's offline tokenizer, gpt-4o-mini's encoding; per tool and in total):

    .venv/bin/python -m tests.meta_agent.test_prompt_budget

With `--api-base http://127.0.0.1:PORT/v1 --model openai/NAME` it also asks a live
OpenAI-compatible server for `usage.prompt_tokens` of one such request (its own tokenizer
and chat template, the first tool forced so that the tools are rendered).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from meta_agent.agent import SYSTEM_PROMPT, compact_schema

BUDGET = 900  # tokens; 1,484 before issue #13 (item 7), 863 after
COUNTING_MODEL = "gpt-4o-mini"


async def mcp_tools() -> list[Any]:
    """The MCP tools as our server lists them (no control plane is called)."""
    from mcp import Client

    from tools.backend import Backend
    from tools.server import build_server

    async with Client(build_server(Backend("http://127.0.0.1:9", None, None))) as client:
        return list((await client.list_tools()).tools)


async def model_request() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The system message and the tools the meta agent sends with every model call."""
    from meta_agent.agent import _openai_tool

    tools = [_openai_tool(t) for t in await mcp_tools()]
    return [{"role": "system", "content": SYSTEM_PROMPT}], tools


def count(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
    from kernel.llm import load_litellm

    return int(load_litellm().token_counter(model=COUNTING_MODEL, messages=messages, tools=tools))


async def test_the_system_prompt_and_tools_fit_the_budget() -> None:
    messages, tools = await model_request()

    total = count(messages, tools)

    assert len(tools) == 9
    assert total <= BUDGET, f"system prompt + tool schemas take {total} tokens (budget {BUDGET})"


async def test_compact_tools_keep_every_argument_and_requirement() -> None:
    for tool in await mcp_tools():
        full = tool.input_schema
        compact = compact_schema(full)
        assert set(compact["properties"]) == set(full["properties"]), tool.name
        assert compact.get("required", []) == full.get("required", []), tool.name
        text = json.dumps(compact)
        assert '"title"' not in text and '{"type": "null"}' not in text, tool.name


def test_compact_schema_drops_only_what_a_model_does_not_need() -> None:
    schema = {
        "type": "object",
        "title": "fArguments",
        "properties": {
            "title": {"type": "string", "title": "Title", "maxLength": 9},
            "status": {
                "anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}],
                "default": None,
                "description": "Only these.",
            },
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}], "default": None},
            "nullable": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": "x"},
            "strict": {"type": "object", "additionalProperties": False},
            "loose": {"type": "object", "additionalProperties": True},
        },
        "required": ["title"],
    }

    assert compact_schema(schema) == {
        "type": "object",
        "properties": {
            "title": {"type": "string"},  # a property may be called title
            "status": {"enum": ["a", "b"], "type": "string", "description": "Only these."},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}], "default": None},
            "nullable": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": "x"},
            "strict": {"type": "object", "additionalProperties": False},
            "loose": {"type": "object"},
        },
        "required": ["title"],
    }


async def _served_count(api_base: str, model: str) -> int:
    from kernel.llm import load_litellm

    messages, tools = await model_request()
    first = tools[0]["function"]["name"]
    reply = await load_litellm().acompletion(
        model=model,
        api_base=api_base,
        api_key=os.environ.get("META_AGENT_LLM_API_KEY") or "sk-none",
        messages=[*messages, {"role": "user", "content": "hi"}],
        tools=tools,
        tool_choice={"type": "function", "function": {"name": first}},
        max_tokens=1,
    )
    return int(reply.usage.prompt_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--api-base", help="an OpenAI-compatible server to ask for usage.prompt_tokens")
    parser.add_argument("--model", default="openai/local", help="the litellm model for --api-base")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    messages, tools = asyncio.run(model_request())
    for tool in tools:
        print(f"{tool['function']['name']:<16} {count([], [tool]):>5}")
    print(f"{'system prompt':<16} {count(messages):>5}")
    print(f"{'total':<16} {count(messages, tools):>5}  (budget {BUDGET}, {COUNTING_MODEL} encoding)")
    if args.api_base:
        print(f"served prompt    {asyncio.run(_served_count(args.api_base, args.model)):>5}  ({args.model})")


if __name__ == "__main__":
    main()
