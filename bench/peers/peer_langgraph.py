"""The agent loop in LangGraph with its PostgreSQL checkpointer (runs in bench/peers/.venvs/langgraph).

    <venv>/bin/python bench/peers/peer_langgraph.py load|bytes|recover URL --durability sync|async ...

As LangGraph's documentation sets it up for durable execution:
- a StateGraph over MessagesState: START → llm → (tool calls?) tools → llm → END, the
  prebuilt ToolNode running the calculator
  (https://docs.langchain.com/oss/python/langgraph/graph-api);
- the checkpointer AsyncPostgresSaver over a psycopg pool with autocommit,
  prepare_threshold=0 and dict_row, `setup()` once, one thread_id per session
  (https://docs.langchain.com/oss/python/langgraph/persistence,
  "Postgres checkpointer" / langgraph-checkpoint-postgres README);
- durability "sync" (each step's checkpoint written before the next step starts) or
  "async" (written while the next step runs; a crash can lose the last steps)
  (https://docs.langchain.com/oss/python/langgraph/durable-execution).
Rebuilding a session is `aget_state` (load its latest checkpoint).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _drive import EXPRESSION, FIRST_TEXT, answer_text, calculate, main, user_text
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

POOL_SIZE = 20  # the connections DBOS's system database pool also gets by default


class LangGraphPeer:
    def __init__(self, durability: str) -> None:
        self.durability = durability
        self.marks: dict[str, list[float]] = {}
        self.pool: AsyncConnectionPool | None = None
        self.graph: Any = None

    def _build(self, checkpointer: AsyncPostgresSaver) -> Any:
        marks = self.marks

        @tool
        async def calculator(expression: str, config: RunnableConfig) -> str:
            """Evaluate an arithmetic expression."""
            result = calculate(expression)
            _mark(marks, config["configurable"]["thread_id"])
            return result

        async def llm(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
            # The scripted model, zero latency: a user message gets one calculator call,
            # the calculator's result gets the answer.
            last = state["messages"][-1]
            if isinstance(last, ToolMessage):
                reply = AIMessage(content=answer_text(str(last.content)))
            else:
                reply = AIMessage(
                    content=FIRST_TEXT,
                    tool_calls=[
                        {
                            "name": "calculator",
                            "args": {"expression": EXPRESSION},
                            "id": f"call-{len(state['messages'])}",
                        }
                    ],
                )
            _mark(marks, config["configurable"]["thread_id"])
            return {"messages": [reply]}

        graph = StateGraph(MessagesState)
        graph.add_node("llm", llm)
        graph.add_node("tools", ToolNode([calculator]))
        graph.add_edge(START, "llm")
        graph.add_conditional_edges("llm", tools_condition)  # tool calls → tools, else END
        graph.add_edge("tools", "llm")
        return graph.compile(checkpointer=checkpointer)

    async def open(self, url: str) -> None:
        self.pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        )
        await self.pool.open()
        checkpointer = AsyncPostgresSaver(self.pool)  # type: ignore[arg-type]
        await checkpointer.setup()
        self.graph = self._build(checkpointer)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def start(self, sid: str) -> None:
        """A session is a thread_id; nothing to create."""

    async def turn(self, sid: str, n: int) -> None:
        self.marks.setdefault(sid, [])
        result = await self.graph.ainvoke(
            {"messages": [HumanMessage(content=user_text(n))]},
            {"configurable": {"thread_id": sid}},
            durability=self.durability,
        )
        last = result["messages"][-1]
        assert last.content == answer_text(calculate(EXPRESSION)), last

    async def rebuild(self, sid: str, turns: int) -> int:
        state = await self.graph.aget_state({"configurable": {"thread_id": sid}})
        return len(state.values["messages"])


def _mark(marks: dict[str, list[float]], sid: str) -> None:
    if sid in marks:
        marks[sid].append(time.monotonic())


if __name__ == "__main__":

    def factory(args: argparse.Namespace) -> LangGraphPeer:
        return LangGraphPeer(args.durability)

    main(factory)
