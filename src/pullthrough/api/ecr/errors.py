"""AWS's error answers: for the JSON protocol (ECR, Secrets Manager) a body of `__type` and
`message` with HTTP 400 (500 for a server fault), for the Query protocol (STS) an XML
`ErrorResponse`. One exception type carries the code and message to whichever renders it."""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

from aiohttp import web

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


class AwsError(Exception):
    """An error as AWS names it: `code` is the exception's name in the service model."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    @property
    def sender_fault(self) -> bool:
        return self.status < 500


def invalid_parameter(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message)


def json_error(error: AwsError, request_id: str) -> web.Response:
    body = json.dumps({"__type": error.code, "message": error.message})
    return web.Response(
        status=error.status,
        body=body.encode(),
        headers={
            "Content-Type": JSON_CONTENT_TYPE,
            "x-amzn-RequestId": request_id,
            "x-amzn-ErrorType": error.code,
        },
    )


def query_error(error: AwsError, request_id: str) -> web.Response:
    fault = "Sender" if error.sender_fault else "Receiver"
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<Error><Type>{fault}</Type><Code>{escape(error.code)}</Code>"
        f"<Message>{escape(error.message)}</Message></Error>"
        f"<RequestId>{escape(request_id)}</RequestId></ErrorResponse>"
    )
    return web.Response(
        status=error.status,
        body=body.encode(),
        headers={"Content-Type": "text/xml", "x-amzn-RequestId": request_id},
    )
