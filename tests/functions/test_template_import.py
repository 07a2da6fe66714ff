"""Importing an existing project: AWS SAM templates and Serverless Framework serverless.yml files
of the kinds their docs show, parsed safely, applied through the API."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.errors import DomainError
from apps.functions.models import Function
from apps.functions.template_import import MAX_TEMPLATE_BYTES, parse_template

# `sam init`'s hello-world (python) with a Globals section, an HttpApi function, a schedule,
# properties Stratus has no counterpart for, and another resource type.
SAM_TEMPLATE = """
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: >
  sam-app

Globals:
  Function:
    Timeout: 3
    MemorySize: 128

Resources:
  HelloWorldFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: hello_world/
      Handler: app.lambda_handler
      Runtime: python3.12
      Architectures:
        - x86_64
      Environment:
        Variables:
          TABLE_NAME: !Ref OrdersTable
          GREETING: hello
          RETRIES: 3
      Events:
        HelloWorld:
          Type: Api
          Properties:
            Path: /hello
            Method: get
  OrdersApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: orders/
      Handler: index.handler
      Runtime: nodejs20.x
      MemorySize: 512
      Timeout: 10
      Policies:
        - DynamoDBCrudPolicy:
            TableName: !Ref OrdersTable
      Events:
        GetOrder:
          Type: HttpApi
          Properties:
            Path: /orders/{id}
            Method: GET
        Nightly:
          Type: Schedule
          Properties:
            Schedule: rate(1 day)
        Queue:
          Type: SQS
          Properties:
            Queue: !GetAtt OrdersQueue.Arn
  OrdersTable:
    Type: AWS::Serverless::SimpleTable

Outputs:
  HelloWorldApi:
    Value: !Sub "https://${ServerlessRestApi}.execute-api.${AWS::Region}.amazonaws.com/Prod/hello/"
"""

SERVERLESS_AWS = """
service: aws-python-http-api
frameworkVersion: '3'

provider:
  name: aws
  runtime: python3.9
  memorySize: 256
  environment:
    STAGE: ${sls:stage}
    LOG_LEVEL: info
  iam:
    role:
      statements: []

functions:
  hello:
    handler: handler.hello
    timeout: 6
    events:
      - httpApi:
          path: /
          method: get
  createUser:
    handler: users.create
    runtime: nodejs18.x
    environment:
      TABLE: users
    events:
      - http: POST users/create
      - schedule: rate(10 minutes)
    layers:
      - arn:aws:lambda:us-east-1:123456789012:layer:deps:1

plugins:
  - serverless-offline
"""

SERVERLESS_TENCENT = """
service: my-service
provider:
  name: tencent
  runtime: Nodejs10.15
  credentials: ~/credentials
  memorySize: 256
  timeout: 10
  environment:
    variables:
      ENV_FIRST: env1

plugins:
  - serverless-tencent-scf

functions:
  hello_world:
    handler: index.main_handler
    runtime: Python3.6
    environment:
      variables:
        ENV_SECOND: env2
    events:
      - apigw:
          name: hello_world_apigw
          parameters:
            stageName: release
            endpoints:
              - path: /
                method: GET
      - timer:
          name: timer
          parameters:
            cronExpression: '*/5 * * * * * *'
"""


def _by_name(plan: Any) -> dict[str, Any]:
    return {f.name: f.as_dict() for f in plan.functions}


def test_sam_template_functions_routes_formats_and_what_is_left_out():
    plan = parse_template(SAM_TEMPLATE)
    assert plan.kind == "sam"
    functions = _by_name(plan)
    assert functions["hello-world-function"] == {
        "name": "hello-world-function",
        "config": {
            "kind": "event",
            "runtime": "python3.11",
            "handler": "app.lambda_handler",
            "memory_mb": 128,
            "timeout_s": 3,
            "env": {"GREETING": "hello", "RETRIES": "3"},
        },
        "routes": [{"method": "GET", "path": "/hello"}],
        "event_format": "apigw-v1",
        "code_uri": "hello_world/",
        "unsupported": [
            "Resources.HelloWorldFunction.Properties.Architectures",
            "Resources.HelloWorldFunction: environment variable TABLE_NAME (a reference to resolve at deploy time)",
        ],
        "not_yet_supported": [],
    }
    orders = functions["orders-api-function"]
    assert orders["config"] == {
        "kind": "event",
        "runtime": "node20",
        "handler": "index.handler",
        "memory_mb": 512,
        "timeout_s": 10,
    }
    assert orders["routes"] == [{"method": "GET", "path": "/orders/{id}"}]
    assert orders["event_format"] == "apigw-v2"  # HttpApi: payload format 2.0
    assert orders["unsupported"] == [
        "Resources.OrdersApiFunction.Properties.Policies",
        "Resources.OrdersApiFunction.Events.Queue (SQS)",
    ]
    assert orders["not_yet_supported"] == [
        "Resources.OrdersApiFunction.Events.Nightly (Schedule): triggers do not exist in Stratus yet"
    ]
    assert plan.unsupported == ["Resources.OrdersTable (AWS::Serverless::SimpleTable)"]


def test_serverless_yml_aws_provider():
    plan = parse_template(SERVERLESS_AWS)
    assert plan.kind == "serverless"
    functions = _by_name(plan)
    assert functions["hello"]["config"] == {
        "kind": "event",
        "runtime": "python3.11",
        "handler": "handler.hello",
        "memory_mb": 256,
        "timeout_s": 6,
        "env": {"LOG_LEVEL": "info", "STAGE": "${sls:stage}"},
    }
    assert (functions["hello"]["routes"], functions["hello"]["event_format"]) == (
        [{"method": "GET", "path": "/"}],
        "apigw-v2",
    )
    create = functions["create-user"]
    assert create["config"]["runtime"] == "node20" and create["config"]["env"]["TABLE"] == "users"
    assert (create["routes"], create["event_format"]) == ([{"method": "POST", "path": "/users/create"}], "apigw-v1")
    assert create["unsupported"] == ["functions.createUser.layers"]
    assert create["not_yet_supported"] == [
        "functions.createUser.events[1].schedule: triggers do not exist in Stratus yet"
    ]
    assert plan.unsupported == ["provider.iam", "plugins"]


def test_serverless_yml_tencent_provider():
    plan = parse_template(SERVERLESS_TENCENT)
    (fn,) = plan.functions
    assert fn.name == "hello-world"
    assert fn.config == {
        "kind": "event",
        "runtime": "python3.11",
        "handler": "index.main_handler",
        "memory_mb": 256,
        "timeout_s": 10,
        "env": {"ENV_FIRST": "env1", "ENV_SECOND": "env2"},
    }
    assert (fn.routes, fn.event_format) == ([{"method": "GET", "path": "/"}], "scf")
    assert fn.not_yet_supported == ["functions.hello_world.events[1].timer: triggers do not exist in Stratus yet"]
    assert plan.unsupported == ["provider.credentials", "plugins"]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("a: !!python/object/apply:os.system ['echo pwned']\n", "tags"),
        ("Resources:\n  F:\n    Type: !Custom x\n", "tags"),
        (
            "a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(f"b{i}: [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n" for i in range(12)),
            "aliases",
        ),
        ("x: " + "y" * MAX_TEMPLATE_BYTES + "\n", "size"),
        ("Resources: [unclosed\n", "yaml"),
        ("- just\n- a list\n", "shape"),
        ("service: x\nprovider: {name: google}\nfunctions: {}\n", "provider"),
        ("hello: world\n", "kind"),
    ],
)
def test_unsafe_or_unknown_templates_are_refused_by_rule(text: str, rule: str):
    with pytest.raises(DomainError) as caught:
        parse_template(text)
    assert caught.value.code == "invalid_template"
    assert caught.value.fields["template"][0].startswith(f"{rule}: ")


def test_import_api_creates_functions_idempotently_and_dry_run_changes_nothing(world: Any, client_for: Any):
    url = f"/api/v1/projects/{world.web.pk}/functions/import"
    client = client_for(world.bob)  # a developer on `web`

    dry = client.post(url, {"template": SAM_TEMPLATE, "dry_run": True}, format="json")
    assert dry.status_code == 200, dry.content
    assert dry.json()["created"] == [] and not Function.objects.filter(project=world.web).exists()

    created = client.post(url, {"template": SAM_TEMPLATE}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["created"] == ["hello-world-function", "orders-api-function"] and body["updated"] == []
    assert body["unsupported"] == ["Resources.OrdersTable (AWS::Serverless::SimpleTable)"]
    hello = Function.objects.get(project=world.web, name="hello-world-function")
    assert (hello.runtime, hello.handler, hello.memory_mb, hello.timeout_s) == (
        "python3.11",
        "app.lambda_handler",
        128,
        3,
    )
    assert hello.env == {"GREETING": "hello", "RETRIES": "3"}
    # The API events became the function's event format and path templates.
    assert (hello.event_format, hello.routes) == ("apigw-v1", ["/hello"])
    orders = Function.objects.get(project=world.web, name="orders-api-function")
    assert (orders.event_format, orders.routes) == ("apigw-v2", ["/orders/{id}"])

    again = client.post(url, {"template": SAM_TEMPLATE}, format="json")
    assert again.status_code == 201, again.content
    assert again.json()["created"] == [] and again.json()["updated"] == ["hello-world-function", "orders-api-function"]
    assert Function.objects.filter(project=world.web).count() == 2


def test_import_api_refusals(world: Any, client_for: Any):
    url = f"/api/v1/projects/{world.web.pk}/functions/import"
    bad = client_for(world.bob).post(url, {"template": "a: !!python/name:os.system\n"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_template"

    # A function Stratus refuses rolls the whole import back, and the error names it.
    template = SERVERLESS_AWS.replace("handler: users.create", "handler: 'not a handler!'")
    refused = client_for(world.bob).post(url, {"template": template}, format="json")
    assert refused.status_code == 400, refused.content
    assert refused.json()["error"]["message"].startswith("Function create-user: ")
    assert not Function.objects.filter(project=world.web).exists()

    viewer = client_for(world.carol).post(url, {"template": SAM_TEMPLATE}, format="json")
    assert viewer.status_code == 403
    outsider = client_for(world.charlie).post(url, {"template": SAM_TEMPLATE}, format="json")
    assert outsider.status_code == 404
    assert not Function.objects.filter(project=world.web).exists()
