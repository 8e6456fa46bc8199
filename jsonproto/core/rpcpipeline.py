"""
The pipeline of a listener started with C{--envelope jsonrpc}: JSON-RPC 2.0
requests, notifications and batches answered by the same handlers, under
the same limits, as jsonproto's messages.

L{RPCPipeline} is L{jsonproto.core.pipeline.Pipeline} with what only
JSON-RPC has: a request translated into the message its handler sees and
its reply into a response (L{jsonproto.core.jsonrpc}); a notification
answered with nothing; a batch answered with one array, in the order of its
requests, once all of them are ready.  Everything else (framing, limits,
order, the error budget) is the base's.

Compiled with the rest of the core (C{rpcpipeline.pxd},
L{jsonproto.core.compiled}).
"""

from __future__ import annotations

from typing import Any

from jsonproto.core import jsonrpc
from jsonproto.core.envelope import _answer, errorReply
from jsonproto.core.output import Owed, errorCodeOf
from jsonproto.core.pipeline import Pipeline
from jsonproto.dispatch.latency import UNKNOWN
from jsonproto.errors import SHUTTING_DOWN, UNKNOWN_TYPE, RequestError
from jsonproto.wire.codec import decodeOrRefuse


class RPCPipeline(Pipeline):
    """
    One connection's JSON-RPC 2.0 messages, from bytes in to framed
    responses out.  Built as L{Pipeline} is.
    """

    def _answerFrame(self, frame: bytes) -> None:
        # Never read straight into a typed handler's type: the message's
        # fields are the request's params, which only decoding finds.
        if self._logMessage is not None:
            self._logMessage("sent", frame)
        message = decodeOrRefuse(frame)
        if self._refused(message):
            return
        if type(message) is list:
            self._answerBatch(message)
        else:
            self._answerRPC(message, None)

    def _refused(self, message: Any) -> bool:
        """
        Answer a decoded message that is not to be handled, as
        L{Pipeline._answerFrame} does: one that is no JSON, or any while the
        service drains.  Whether it was.
        """
        if type(message) is RequestError:
            self._emit(message.reply(), None)
            return True
        if self.refusing:
            self._emit(errorReply(SHUTTING_DOWN, message), message)
            return True
        return False

    def _answerRPC(self, value: Any, group: Owed | None) -> Any:
        """
        Answer one JSON-RPC request: into the output (or its batch, when
        C{group} is one), or nothing for a notification.

        @return: The reply, if it is ready and belongs to a batch; L{None}
            for a notification; else what the caller waits for.
        """
        message, rpcId, notification = jsonrpc.request(value)
        if notification:
            if "status" in message:
                self._drop(message, value)
                return None
            handler = self._handlers.get(message["type"]) or self._oneWay.get(message["type"])
            if handler is None:
                self._latency.count(UNKNOWN)
                self._drop(UNKNOWN_TYPE.reply(), message)
            else:
                self._answerOneWay(handler, message)
            return None
        if "status" in message:
            result: Any = message
            if rpcId is not None:
                result["id"] = rpcId
        elif self._oneWay and message["type"] in self._oneWay:
            # The specification wants every request answered: a one-way
            # method gets an empty result, or the error it was refused with.
            result = self._answerOneWay(self._oneWay[message["type"]], message, True)
            if result is None:
                result = {"status": "OK"}
            result["id"] = rpcId
        else:
            result = _answer(self._handlers, self._latency, self._dispatcher, message, self._context)
        if group is not None:
            return result
        if type(result) is dict:
            self._emit(result, message)
        else:
            self._wait(result, message)
        return None

    def _answerBatch(self, batch: list[Any]) -> None:
        """
        Answer a JSON-RPC batch with one array of responses, in the order
        of its requests (notifications, which get none, left out), once all
        are ready; an empty batch is one Invalid Request.
        """
        if not batch:
            self._emit(jsonrpc.INVALID_RPC.reply("an empty batch"), None)
            return
        group = Owed()
        group.replies = []
        waiting = []
        for value in batch:
            result = self._answerRPC(value, group)
            if result is None:
                continue
            if type(result) is not dict:
                waiting.append((len(group.replies), result, value))
            group.replies.append(result)
        if not group.replies:
            return
        if not waiting:
            group.frame = self._frameBatch(group.replies)
            self._place(group)
            return
        group.missing = len(waiting)
        self._owing().append(group)
        for index, pending, message in waiting:
            member = Owed()
            member.group = group
            member.index = index
            self._detached += 1
            self._awaitReply(member, pending, message)

    def complete(self, owed: Owed, reply: dict[str, Any] | None) -> None:
        """
        As L{Pipeline.complete}; a request of a batch completes the batch's
        place once it is the last to.
        """
        group = owed.group
        if group is None:
            Pipeline.complete(self, owed, reply)
            return
        assert reply is not None and group.replies is not None
        self._detached -= 1
        group.replies[owed.index] = reply
        group.missing -= 1
        if group.missing:
            return
        group.frame = self._frameBatch(group.replies)
        self._errorCode = None
        self._advance()

    def _frame(self, reply: dict[str, Any]) -> bytes:
        """
        The framed JSON-RPC response carrying one reply (see
        L{PipelineOutput._frame}).
        """
        try:
            encoded = self._encoded(jsonrpc.response(reply, reply.get("id")))
        except RequestError as e:
            # A handler's reply JSON cannot carry (NaN, a set): the server's
            # mistake, logged by the dispatcher.
            reply = self._dispatcher.unencodable(reply, e)
            encoded = self._encoded(jsonrpc.response(reply, reply.get("id")))
        self._noteError(reply)
        return self._framed(encoded)

    def _frameBatch(self, replies: list[Any]) -> bytes:
        """
        The framed JSON-RPC array answering a batch, counted as one message
        out; each error among its replies is counted and charged.
        """
        frame = self._framed(self._encoded([jsonrpc.response(reply, reply.get("id")) for reply in replies]))
        for reply in replies:
            code = errorCodeOf(reply)
            if code is not None:
                self._errorReplied(code)
        return frame
