"""STS GetCallerIdentity (Query protocol, XML answer): who the access key signing the request
belongs to, as the AWS CLI and Terraform ask before anything else."""

from __future__ import annotations

from xml.sax.saxutils import escape

from pullthrough.api.ecr.call import Call
from pullthrough.api.ecr.shapes import principal_arn


def caller_identity(call: Call, request_id: str) -> str:
    row = call.principal_row
    arn = principal_arn(call.aws, row.kind if row else "user", call.principal.name)
    user_id = call.access_key_id or call.principal.name
    return (
        '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        "<GetCallerIdentityResult>"
        f"<Arn>{escape(arn)}</Arn><UserId>{escape(user_id)}</UserId>"
        f"<Account>{escape(call.aws.account_id)}</Account>"
        "</GetCallerIdentityResult>"
        f"<ResponseMetadata><RequestId>{escape(request_id)}</RequestId></ResponseMetadata>"
        "</GetCallerIdentityResponse>"
    )
