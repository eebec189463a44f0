"""Amazon Resource Names in Lookout for Vision's form.

    arn:aws:lookoutvision:REGION:ACCOUNT:project/PROJECT
    arn:aws:lookoutvision:REGION:ACCOUNT:model/PROJECT/VERSION

Kenpin has one namespace of projects, so the region and account only decorate: answers carry
the caller's region (from its signature) and KENPIN_AWS_ACCOUNT_ID, and any region or account
is accepted in an ARN a caller sends, so that ARNs built by client code keep working.
"""

import re
from dataclasses import dataclass

from django.conf import settings

from projects.models import PROJECT_NAME_PATTERN

_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lookoutvision:(?P<region>[a-z0-9-]*):(?P<account>\d*):"
    rf"(?:project/(?P<project>{PROJECT_NAME_PATTERN})|model/(?P<model_project>{PROJECT_NAME_PATTERN})/(?P<version>[1-9][0-9]*))$"
)


def account_id() -> str:
    return getattr(settings, "KENPIN_AWS_ACCOUNT_ID", "000000000000")


def project_arn(*, region: str, project: str) -> str:
    return f"arn:aws:lookoutvision:{region}:{account_id()}:project/{project}"


def model_arn(*, region: str, project: str, version: int) -> str:
    return f"arn:aws:lookoutvision:{region}:{account_id()}:model/{project}/{version}"


@dataclass(frozen=True)
class ParsedArn:
    project: str
    version: int | None  # None for a project's ARN


def parse_arn(arn: str) -> ParsedArn | None:
    match = _ARN.match(arn)
    if not match:
        return None
    if match["project"]:
        return ParsedArn(project=match["project"], version=None)
    return ParsedArn(project=match["model_project"], version=int(match["version"]))
