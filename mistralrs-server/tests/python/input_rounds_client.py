"""A 2026-07-28 client without a session (the official Python SDK) calls the
conformance fixture's sampling and elicitation tools through the gateway: the
upstream's requests during the call come back as `InputRequiredResult` rounds,
which the SDK answers with its callbacks and retries. Then the rounds are
driven by hand: a wrong or reused `requestState`, and a round answered with
nothing. Prints what happened as JSON.

Usage: python input_rounds_client.py URL
"""
import asyncio
import json
import sys

from mcp import Client, types


def text_of(result) -> str:
    return " ".join(part.text for part in result.content if isinstance(part, types.TextContent))


async def main(url: str) -> None:
    report: dict = {"sampling asked": [], "elicitation asked": []}

    async def sample(context, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        report["sampling asked"].append([m.content.text for m in params.messages])
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="4, said the client"),
            model="the-clients-model",
        )

    async def elicit(context, params) -> types.ElicitResult:
        report["elicitation asked"].append(params.message)
        return types.ElicitResult(action="accept", content={"response": "Ada"})

    async with Client(
        url, mode="2026-07-28", cache=None, sampling_callback=sample, elicitation_callback=elicit
    ) as client:
        result = await client.call_tool("test_sampling", {"prompt": "What is 2+2?"})
        report["sampling"] = text_of(result)
        result = await client.call_tool("test_elicitation", {"message": "Your name?"})
        report["elicitation"] = text_of(result)

        # By hand: the first round's questions and its requestState.
        session = client.session
        first = await session.call_tool("test_sampling", {"prompt": "Again?"}, allow_input_required=True)
        report["first round"] = {
            "result_type": first.result_type,
            "questions": sorted(
                request.method for request in (first.input_requests or {}).values()
            ),
            "has state": bool(first.request_state),
        }
        for what, name, state in [
            ("unknown state", "test_sampling", "not-a-state"),
            ("state of another tool", "test_elicitation", first.request_state),
        ]:
            try:
                await session.call_tool(name, {}, request_state=state, input_responses={}, allow_input_required=True)
                report[what] = "accepted"
            except Exception as error:  # the SDK raises the JSON-RPC error
                report[what] = str(error)
        # Answered with nothing: the upstream's request fails, so does its tool.
        last = await session.call_tool(
            "test_sampling",
            {"prompt": "Again?"},
            request_state=first.request_state,
            input_responses={},
            allow_input_required=True,
        )
        report["unanswered"] = {"is_error": bool(last.is_error), "text": text_of(last)}
        try:
            await session.call_tool(
                "test_sampling", {}, request_state=first.request_state, input_responses={}, allow_input_required=True
            )
            report["state reused"] = "accepted"
        except Exception as error:
            report["state reused"] = str(error)
    print(json.dumps(report))


asyncio.run(main(sys.argv[1]))
