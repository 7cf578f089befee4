"""Invented Harness audit events for the simulator, tests and benchmarks.

``SAMPLE_EVENTS`` are the nine invented sample events the team modelled on Harness's
published AuditEvent shape (fictitious ids, example.com emails, documentation IP ranges).
``generate_events`` produces any number of events in the same shape, deterministically for
a seed; ``generate_burst`` makes many events stamped with one millisecond (one bulk change).
Nothing here is real Harness output.
"""

from __future__ import annotations

import gc
import random
from base64 import urlsafe_b64encode
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["DEFAULT_ACCOUNT_ID", "SAMPLE_EVENTS", "generate_burst", "generate_events"]

# The simulator's default account (see devtools.harness_simulator).
DEFAULT_ACCOUNT_ID = "simAccount0000000000001"

SAMPLE_EVENTS: list[dict] = [
    {
        "auditId": "6667f0a98c1e4b2d5f3a9e01",
        "resourceScope": {"accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q"},
        "httpRequestInfo": {"requestMethod": "POST"},
        "requestMetadata": {"clientIP": "203.0.113.24"},
        "timestamp": 1749564201512,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "maria.lopez@example.com"},
            "labels": {"username": "Maria Lopez", "userId": "b7QmZp3NTe2kXc9VwLr4sA"},
        },
        "module": "CORE",
        "resource": {
            "type": "USER",
            "identifier": "maria.lopez@example.com",
            "labels": {"resourceName": "Maria Lopez", "userId": "b7QmZp3NTe2kXc9VwLr4sA"},
        },
        "action": "LOGIN",
    },
    {
        "auditId": "6667f02f8c1e4b2d5f3a9df7",
        "resourceScope": {"accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q"},
        "httpRequestInfo": {"requestMethod": "POST"},
        "requestMetadata": {"clientIP": "198.51.100.77"},
        "timestamp": 1749564067088,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "j.chen@example.com"},
            "labels": {"username": "Jun Chen", "userId": "Qe8RtY2uIo4pAs6dFg0hJk"},
        },
        "module": "CORE",
        "resource": {
            "type": "USER",
            "identifier": "j.chen@example.com",
            "labels": {"resourceName": "Jun Chen", "userId": "Qe8RtY2uIo4pAs6dFg0hJk"},
        },
        "action": "UNSUCCESSFUL_LOGIN",
    },
    {
        "auditId": "6667ef948c1e4b2d5f3a9de2",
        "resourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "payments",
            "projectIdentifier": "checkout_api",
        },
        "httpRequestInfo": {"requestMethod": "POST"},
        "requestMetadata": {"clientIP": "10.20.4.18"},
        "timestamp": 1749563924930,
        "authenticationInfo": {
            "principal": {"type": "SERVICE_ACCOUNT", "identifier": "terraform_automation"}
        },
        "module": "CORE",
        "resource": {
            "type": "CONNECTOR",
            "identifier": "gcp_prod_connector",
            "labels": {"resourceName": "GCP Prod Connector"},
        },
        "action": "CREATE",
    },
    {
        "auditId": "6667ee0a8c1e4b2d5f3a9dbc",
        "resourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "payments",
            "projectIdentifier": "checkout_api",
        },
        "httpRequestInfo": {"requestMethod": "PUT"},
        "requestMetadata": {"clientIP": "203.0.113.24"},
        "timestamp": 1749563530271,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "maria.lopez@example.com"},
            "labels": {"username": "Maria Lopez", "userId": "b7QmZp3NTe2kXc9VwLr4sA"},
        },
        "module": "PMS",
        "resource": {
            "type": "PIPELINE",
            "identifier": "deploy_checkout",
            "labels": {"resourceName": "Deploy Checkout"},
        },
        "action": "UPDATE",
    },
    {
        "auditId": "6667ed0b8c1e4b2d5f3a9da1",
        "resourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "payments",
            "projectIdentifier": "checkout_api",
        },
        "timestamp": 1749563275004,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "maria.lopez@example.com"},
            "labels": {"username": "maria.lopez@example.com", "userId": "b7QmZp3NTe2kXc9VwLr4sA"},
        },
        "module": "PMS",
        "resource": {
            "type": "PIPELINE",
            "identifier": "deploy_checkout",
            "labels": {"resourceName": "Deploy Checkout"},
        },
        "action": "START",
        "auditEventData": {
            "type": "PipelineExecutionEventData",
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "payments",
            "projectIdentifier": "checkout_api",
            "pipelineIdentifier": "deploy_checkout",
            "planExecutionId": "kP2nV7qXRWeT5yUiOa3sDf",
            "runSequence": 412,
            "status": "RUNNING",
            "triggeredBy": {
                "type": "MANUAL",
                "identifier": "b7QmZp3NTe2kXc9VwLr4sA",
                "extraInfo": {"email": "maria.lopez@example.com"},
            },
            "startTs": 1749563274811,
            "endTs": 0,
        },
    },
    {
        "auditId": "6667eb328c1e4b2d5f3a9d77",
        "resourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "payments",
        },
        "httpRequestInfo": {"requestMethod": "POST"},
        "requestMetadata": {"clientIP": "198.51.100.9"},
        "timestamp": 1749562802617,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "admin.ops@example.com"},
            "labels": {"username": "Ops Admin", "userId": "Lm4NbV8cXz1QwErT6yUi9o"},
        },
        "module": "CORE",
        "resource": {
            "type": "USER",
            "identifier": "new.hire@example.com",
            "labels": {"resourceName": "new.hire@example.com", "userId": "Zx5CvB7nM2aSdF9gH1jK3l"},
        },
        "action": "ADD_COLLABORATOR",
        "auditEventData": {
            "type": "AddCollaboratorAuditEventData",
            "source": {"type": "Invitation"},
        },
    },
    {
        "auditId": "6667e9268c1e4b2d5f3a9d40",
        "resourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "payments",
            "projectIdentifier": "checkout_web",
        },
        "httpRequestInfo": {"requestMethod": "PATCH"},
        "requestMetadata": {"clientIP": "192.0.2.51"},
        "timestamp": 1749562278449,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "j.chen@example.com"},
            "labels": {"username": "Jun Chen", "userId": "Qe8RtY2uIo4pAs6dFg0hJk"},
        },
        "module": "CF",
        "environment": {"type": "Production", "identifier": "prod"},
        "resource": {
            "type": "FEATURE_FLAG",
            "identifier": "new_checkout_flow",
            "labels": {"resourceName": "New Checkout Flow"},
        },
        "action": "UPDATE",
        "auditEventData": {"type": "FeatureFlagAuditEventData", "environment": "prod"},
    },
    {
        "auditId": "6667e71c8c1e4b2d5f3a9d0b",
        "resourceScope": {"accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q"},
        "httpRequestInfo": {"requestMethod": "POST"},
        "requestMetadata": {"clientIP": "198.51.100.9"},
        "timestamp": 1749561756150,
        "authenticationInfo": {
            "principal": {"type": "USER", "identifier": "admin.ops@example.com"},
            "labels": {"username": "Ops Admin", "userId": "Lm4NbV8cXz1QwErT6yUi9o"},
        },
        "module": "CORE",
        "resource": {
            "type": "TOKEN",
            "identifier": "siem_collector_token",
            "labels": {"resourceName": "siem_collector_token"},
        },
        "action": "CREATE_TOKEN",
    },
    {
        "auditId": "6667e5648c1e4b2d5f3a9ce6",
        "resourceScope": {
            "accountIdentifier": "Xk3pQ9rTSvWm2LbA7cYd1Q",
            "orgIdentifier": "default",
            "projectIdentifier": "resilience",
        },
        "timestamp": 1749561300020,
        "authenticationInfo": {"principal": {"type": "SYSTEM", "identifier": "SYSTEM"}},
        "module": "CHAOS",
        "resource": {
            "type": "CHAOS_EXPERIMENT",
            "identifier": "pod-delete-checkout",
            "labels": {"resourceName": "pod-delete-checkout"},
        },
        "action": "DELETE",
        "auditEventData": {"type": "ChaosAuditEventData", "eventModule": "CHAOS"},
    },
]


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------

_T = TypeVar("_T")


def _pick(rng: random.Random, seq: Sequence[_T]) -> _T:
    """rng.choice, about five times faster (deterministic for a seed all the same)."""
    return seq[int(rng.random() * len(seq))]


def _ident22(rng: random.Random) -> str:
    """A 22-character id like Harness's generated ones (a UUID's 128 bits, base64url)."""
    return urlsafe_b64encode(rng.getrandbits(128).to_bytes(16, "big"))[:22].decode()


# Fixed pools, derived from a constant seed so they never change between runs.
_POOL_RNG = random.Random(0x4A12E55)

_USER_NAMES = [
    ("Maria Lopez", "maria.lopez@example.com"),
    ("Jun Chen", "j.chen@example.com"),
    ("Ops Admin", "admin.ops@example.com"),
    ("Priya Nair", "priya.nair@example.com"),
    ("Tom Becker", "tom.becker@example.com"),
    ("Aisha Bello", "aisha.bello@example.com"),
    ("Lukas Novak", "l.novak@example.com"),
    ("Sofia Rossi", "sofia.rossi@example.com"),
    ("Kenji Watanabe", "kenji.w@example.com"),
    ("Emma Dubois", "emma.dubois@example.com"),
    ("Carlos Mendes", "c.mendes@example.com"),
    ("Hannah Schmidt", "hannah.schmidt@example.com"),
    ("Oluwaseun Ade", "seun.ade@example.com"),
    ("Grace Kim", "grace.kim@example.com"),
]
# (display name, email, userId)
_USERS = [(name, email, _ident22(_POOL_RNG)) for name, email in _USER_NAMES]

_SERVICE_ACCOUNTS = [
    "terraform_automation",
    "ci_bot",
    "siem_collector",
    "argo_sync",
    "backstage_sync",
]

_ORGS = {
    "payments": ["checkout_api", "checkout_web", "ledger"],
    "default": ["resilience", "platform_tools", "default_project"],
    "data": ["warehouse", "ml_features"],
    "mobile": ["ios_app", "android_app"],
}
_ORG_NAMES = list(_ORGS)

# Documentation ranges (RFC 5737) and private corporate ranges.
_CLIENT_IPS = (
    [f"203.0.113.{_POOL_RNG.randint(1, 254)}" for _ in range(12)]
    + [f"198.51.100.{_POOL_RNG.randint(1, 254)}" for _ in range(12)]
    + [f"192.0.2.{_POOL_RNG.randint(1, 254)}" for _ in range(8)]
    + [f"10.20.{_POOL_RNG.randint(0, 15)}.{_POOL_RNG.randint(1, 254)}" for _ in range(8)]
)
# Each user tends to come from one address.
_USER_IP = {email: _CLIENT_IPS[i % len(_CLIENT_IPS)] for i, (_, email, _) in enumerate(_USERS)}

_METHOD_FOR_ACTION = {
    "CREATE": "POST",
    "UPDATE": "PUT",
    "UPSERT": "PUT",
    "RESTORE": "PUT",
    "DELETE": "DELETE",
    "FORCE_DELETE": "DELETE",
    "LOGIN": "POST",
    "LOGIN2FA": "POST",
    "UNSUCCESSFUL_LOGIN": "POST",
    "CREATE_TOKEN": "POST",
    "REVOKE_TOKEN": "DELETE",
    "INVITE": "POST",
    "RESEND_INVITE": "POST",
    "REVOKE_INVITE": "DELETE",
    "ADD_COLLABORATOR": "POST",
    "REMOVE_COLLABORATOR": "DELETE",
    "ROLE_ASSIGNMENT_CREATED": "POST",
    "ROLE_ASSIGNMENT_DELETED": "DELETE",
}

_CRUD = ["CREATE", "UPDATE", "UPDATE", "UPDATE", "DELETE"]

# (module, resource type, identifier stems, actions, scope level)
# scope level: "account", "org", "project" or "any".
_ENTITY_KINDS: list[tuple[str, str, list[str], list[str], str]] = [
    (
        "CORE",
        "CONNECTOR",
        ["gcp_prod_connector", "github_org", "dockerhub", "k8s_prod"],
        _CRUD,
        "any",
    ),
    ("CORE", "SECRET", ["db_password", "slack_webhook", "gcp_sa_key", "npm_token"], _CRUD, "any"),
    ("CORE", "USER_GROUP", ["platform_admins", "sre_oncall", "readonly"], _CRUD, "any"),
    ("CORE", "SERVICE_ACCOUNT", ["terraform_automation", "ci_bot"], _CRUD, "account"),
    ("CORE", "ROLE", ["pipeline_operator", "auditor"], _CRUD, "any"),
    ("CORE", "RESOURCE_GROUP", ["prod_resources", "all_resources"], _CRUD, "any"),
    ("CORE", "ORGANIZATION", ["payments", "data", "mobile"], ["CREATE", "UPDATE"], "account"),
    ("CORE", "PROJECT", ["checkout_api", "warehouse", "ios_app"], ["CREATE", "UPDATE"], "org"),
    ("CORE", "DELEGATE", ["gke-prod-delegate", "eks-stage-delegate"], ["CREATE", "UPSERT"], "any"),
    ("CORE", "SETTING", ["enable_force_delete", "mandate_webhook_secrets"], ["UPDATE"], "account"),
    ("PMS", "PIPELINE", ["deploy_checkout", "build_web", "nightly_etl"], _CRUD, "project"),
    ("PMS", "INPUT_SET", ["prod_inputs", "canary_inputs"], _CRUD, "project"),
    ("PMS", "TRIGGER", ["on_main_push", "nightly_cron"], _CRUD, "project"),
    ("CD", "SERVICE", ["checkout-api", "web-frontend", "ledger-svc"], _CRUD, "project"),
    ("CD", "ENVIRONMENT", ["prod", "staging", "qa"], _CRUD, "project"),
    ("CD", "INFRASTRUCTURE", ["gke-prod", "eks-staging"], _CRUD, "project"),
    ("CD", "GITOPS_AGENT", ["argo-prod"], ["CREATE", "UPDATE"], "project"),
    ("CI", "CI_BUILD_INFRA", ["hosted-linux", "k8s-build-farm"], ["CREATE", "UPDATE"], "project"),
    ("TEMPLATESERVICE", "TEMPLATE", ["deploy_stage", "build_step"], _CRUD, "any"),
    ("GOVERNANCE", "GOVERNANCE_POLICY", ["require_approval", "no_latest_tag"], _CRUD, "any"),
    ("STO", "STO_TARGET", ["checkout-api-image", "web-repo"], ["CREATE", "UPDATE"], "project"),
    ("CODE", "CODE_REPOSITORY", ["checkout-api", "infra-live"], _CRUD, "project"),
    ("IDP", "IDP_CATALOG_ENTITY", ["checkout-api", "ledger-svc"], ["CREATE", "UPDATE"], "account"),
    ("CE", "PERSPECTIVE", ["cloud_spend", "k8s_costs"], _CRUD, "account"),
    ("SRM", "MONITORED_SERVICE", ["checkout_api_prod", "web_prod"], _CRUD, "project"),
    ("IACM", "WORKSPACE", ["network-prod", "gke-clusters"], _CRUD, "project"),
    ("SEI", "SEI_COLLECTION", ["engineering", "payments_team"], ["CREATE", "UPDATE"], "account"),
    ("HAR", "REGISTRY", ["docker-local", "npm-proxy"], ["CREATE", "UPDATE"], "project"),
]


def _title(identifier: str) -> str:
    return identifier.replace("_", " ").replace("-", " ").title()


def _scope(rng: random.Random, account_id: str, level: str) -> dict:
    if level == "any":
        level = _pick(rng, ("account", "org", "project", "project"))
    scope = {"accountIdentifier": account_id}
    if level == "account":
        return scope
    org = _pick(rng, _ORG_NAMES)
    scope["orgIdentifier"] = org
    if level == "project":
        scope["projectIdentifier"] = _pick(rng, _ORGS[org])
    return scope


def _user_auth(user: tuple[str, str, str], rng: random.Random) -> dict:
    name, email, user_id = user
    # Harness sometimes labels a user by email (e.g. before the name is set).
    username = email if rng.random() < 0.1 else name
    return {
        "principal": {"type": "USER", "identifier": email},
        "labels": {"username": username, "userId": user_id},
    }


def _principal(rng: random.Random, p_sa: float = 0.2, p_system: float = 0.05) -> tuple[dict, str]:
    """An authenticationInfo and the client IP to use (empty for SYSTEM)."""
    r = rng.random()
    if r < p_system:
        return {"principal": {"type": "SYSTEM", "identifier": "SYSTEM"}}, ""
    if r < p_system + p_sa:
        sa = _pick(rng, _SERVICE_ACCOUNTS)
        return {"principal": {"type": "SERVICE_ACCOUNT", "identifier": sa}}, _pick(
            rng, _CLIENT_IPS[-8:]
        )
    user = _pick(rng, _USERS)
    return _user_auth(user, rng), _USER_IP[user[1]]


def _http(event: dict, method: str, ip: str) -> None:
    event["httpRequestInfo"] = {"requestMethod": method}
    event["requestMetadata"] = {"clientIP": ip}


# Each scenario fills in an event (without auditId/timestamp) and returns it.
_Scenario = Callable[[random.Random, str, int], dict]


def _login(rng: random.Random, account_id: str, ts: int) -> dict:
    user = _pick(rng, _USERS)
    r = rng.random()
    action = "LOGIN" if r < 0.78 else ("LOGIN2FA" if r < 0.86 else "UNSUCCESSFUL_LOGIN")
    name, email, user_id = user
    ip = _USER_IP[email] if rng.random() < 0.85 else _pick(rng, _CLIENT_IPS)
    event = {"resourceScope": {"accountIdentifier": account_id}}
    _http(event, "POST", ip)
    event["authenticationInfo"] = _user_auth(user, rng)
    event["module"] = "CORE"
    event["resource"] = {
        "type": "USER",
        "identifier": email,
        "labels": {"resourceName": name, "userId": user_id},
    }
    event["action"] = action
    return event


def _entity_change(rng: random.Random, account_id: str, ts: int) -> dict:
    module, rtype, stems, actions, level = _pick(rng, _ENTITY_KINDS)
    identifier = _pick(rng, stems)
    action = _pick(rng, actions)
    auth, ip = _principal(rng)
    event = {"resourceScope": _scope(rng, account_id, level)}
    if ip and rng.random() < 0.97:
        method = _METHOD_FOR_ACTION.get(action, "POST")
        if action == "UPDATE" and rng.random() < 0.2:
            method = "PATCH"
        _http(event, method, ip)
    event["authenticationInfo"] = auth
    event["module"] = module
    if module == "CD" and rtype in ("ENVIRONMENT", "INFRASTRUCTURE") and rng.random() < 0.5:
        env = _pick(rng, (("Production", "prod"), ("PreProduction", "staging")))
        event["environment"] = {"type": env[0], "identifier": env[1]}
    event["resource"] = {
        "type": rtype,
        "identifier": identifier,
        "labels": {"resourceName": _title(identifier)},
    }
    event["action"] = action
    if module == "TEMPLATESERVICE" and action != "DELETE":
        event["auditEventData"] = {
            "type": "TemplateEventData",
            "templateVersionLabel": f"v{rng.randint(1, 9)}",
        }
    return event


_EXEC_STATUS = {
    "START": "RUNNING",
    "END": None,
    "ABORT": "ABORTED",
    "PAUSE": "PAUSED",
    "RESUME": "RUNNING",
    "TIMEOUT": "EXPIRED",
}


def _pipeline_execution(rng: random.Random, account_id: str, ts: int) -> dict:
    org = _pick(rng, _ORG_NAMES)
    project = _pick(rng, _ORGS[org])
    pipeline = _pick(rng, ("deploy_checkout", "build_web", "nightly_etl", "release_mobile"))
    action = _pick(rng, ("START", "START", "END", "END", "ABORT", "PAUSE", "RESUME", "TIMEOUT"))
    status = _EXEC_STATUS[action] or _pick(rng, ("SUCCESS", "SUCCESS", "SUCCESS", "FAILED"))
    scope = {"accountIdentifier": account_id, "orgIdentifier": org, "projectIdentifier": project}
    r = rng.random()
    if r < 0.6:
        user = _pick(rng, _USERS)
        auth = _user_auth(user, rng)
        trigger = {"type": "MANUAL", "identifier": user[2], "extraInfo": {"email": user[1]}}
    elif r < 0.85:
        auth = {"principal": {"type": "SYSTEM", "identifier": "SYSTEM"}}
        trigger = {"type": "WEBHOOK", "identifier": "on_main_push", "extraInfo": {}}
    else:
        auth = {"principal": {"type": "SYSTEM", "identifier": "SYSTEM"}}
        trigger = {"type": "SCHEDULER_CRON", "identifier": "nightly_cron", "extraInfo": {}}
    start_ts = (
        ts - rng.randint(50, 400) if action == "START" else ts - rng.randint(30_000, 3_600_000)
    )
    module = "CI" if pipeline == "build_web" and rng.random() < 0.7 else "PMS"
    return {
        "resourceScope": scope,
        "authenticationInfo": auth,
        "module": module,
        "resource": {
            "type": "PIPELINE",
            "identifier": pipeline,
            "labels": {"resourceName": _title(pipeline)},
        },
        "action": action,
        "auditEventData": {
            "type": "PipelineExecutionEventData",
            "accountIdentifier": account_id,
            "orgIdentifier": org,
            "projectIdentifier": project,
            "pipelineIdentifier": pipeline,
            "planExecutionId": _ident22(rng),
            "runSequence": rng.randint(1, 5000),
            "status": status,
            "triggeredBy": trigger,
            "startTs": start_ts,
            "endTs": 0 if action in ("START", "PAUSE", "RESUME") else ts,
        },
    }


def _feature_flag(rng: random.Random, account_id: str, ts: int) -> dict:
    org = _pick(rng, _ORG_NAMES)
    flag = _pick(rng, ("new_checkout_flow", "dark_mode", "fast_ledger", "beta_search"))
    env_type, env_id = _pick(
        rng, (("Production", "prod"), ("PreProduction", "staging"), ("PreProduction", "qa"))
    )
    auth, ip = _principal(rng, p_sa=0.15, p_system=0.0)
    event = {
        "resourceScope": {
            "accountIdentifier": account_id,
            "orgIdentifier": org,
            "projectIdentifier": _pick(rng, _ORGS[org]),
        }
    }
    action = _pick(rng, ("UPDATE", "UPDATE", "UPDATE", "CREATE", "DELETE"))
    _http(event, "PATCH" if action == "UPDATE" else _METHOD_FOR_ACTION[action], ip)
    event["authenticationInfo"] = auth
    event["module"] = "CF"
    event["environment"] = {"type": env_type, "identifier": env_id}
    event["resource"] = {
        "type": "FEATURE_FLAG",
        "identifier": flag,
        "labels": {"resourceName": _title(flag)},
    }
    event["action"] = action
    event["auditEventData"] = {"type": "FeatureFlagAuditEventData", "environment": env_id}
    return event


def _chaos(rng: random.Random, account_id: str, ts: int) -> dict:
    experiment = _pick(rng, ("pod-delete-checkout", "network-latency-ledger", "cpu-hog-web"))
    auth, ip = _principal(rng, p_sa=0.1, p_system=0.5)
    event = {"resourceScope": _scope(rng, account_id, "project")}
    action = _pick(rng, ("CREATE", "UPDATE", "DELETE", "START", "END"))
    if ip:
        _http(event, _METHOD_FOR_ACTION.get(action, "POST"), ip)
    event["authenticationInfo"] = auth
    event["module"] = "CHAOS"
    event["resource"] = {
        "type": "CHAOS_EXPERIMENT",
        "identifier": experiment,
        "labels": {"resourceName": experiment},
    }
    event["action"] = action
    event["auditEventData"] = {"type": "ChaosAuditEventData", "eventModule": "CHAOS"}
    return event


def _token(rng: random.Random, account_id: str, ts: int) -> dict:
    auth, ip = _principal(rng, p_sa=0.3, p_system=0.0)
    token = _pick(rng, ("siem_collector_token", "terraform_pat", "ci_token", "backup_sat"))
    event = {"resourceScope": {"accountIdentifier": account_id}}
    action = "CREATE_TOKEN" if rng.random() < 0.6 else "REVOKE_TOKEN"
    _http(event, _METHOD_FOR_ACTION[action], ip)
    event["authenticationInfo"] = auth
    event["module"] = "CORE"
    event["resource"] = {"type": "TOKEN", "identifier": token, "labels": {"resourceName": token}}
    event["action"] = action
    return event


def _membership(rng: random.Random, account_id: str, ts: int) -> dict:
    admin = _pick(rng, _USERS[:4])
    target = _pick(rng, _USERS)
    action = _pick(
        rng, ("INVITE", "RESEND_INVITE", "REVOKE_INVITE", "ADD_COLLABORATOR", "REMOVE_COLLABORATOR")
    )
    event = {"resourceScope": _scope(rng, account_id, _pick(rng, ("account", "org")))}
    _http(event, _METHOD_FOR_ACTION[action], _USER_IP[admin[1]])
    event["authenticationInfo"] = _user_auth(admin, rng)
    event["module"] = "CORE"
    event["resource"] = {
        "type": "USER",
        "identifier": target[1],
        "labels": {"resourceName": target[1], "userId": target[2]},
    }
    event["action"] = action
    if action == "ADD_COLLABORATOR":
        event["auditEventData"] = {
            "type": "AddCollaboratorAuditEventData",
            "source": {"type": _pick(rng, ("Invitation", "SCIM", "JIT"))},
        }
    return event


def _role_assignment(rng: random.Random, account_id: str, ts: int) -> dict:
    auth, ip = _principal(rng, p_sa=0.2, p_system=0.15)
    event = {"resourceScope": _scope(rng, account_id, "any")}
    action = "ROLE_ASSIGNMENT_CREATED" if rng.random() < 0.7 else "ROLE_ASSIGNMENT_DELETED"
    if ip:
        _http(event, _METHOD_FOR_ACTION[action], ip)
    event["authenticationInfo"] = auth
    event["module"] = "CORE"
    identifier = _ident22(rng)
    event["resource"] = {"type": "ROLE_ASSIGNMENT", "identifier": identifier}
    event["action"] = action
    event["auditEventData"] = {
        "type": "RoleAssignmentAuditEventData",
        "roleIdentifier": _pick(rng, ("_account_viewer", "_project_admin", "pipeline_operator")),
        "resourceGroupIdentifier": _pick(rng, ("_all_resources", "prod_resources")),
        "principal": {"type": "USER", "identifier": _pick(rng, _USERS)[2]},
    }
    return event


_SCENARIOS: list[tuple[_Scenario, int]] = [
    (_login, 24),
    (_entity_change, 34),
    (_pipeline_execution, 18),
    (_feature_flag, 8),
    (_chaos, 4),
    (_token, 4),
    (_membership, 4),
    (_role_assignment, 4),
]
_SCENARIO_FUNCS = [s for s, _ in _SCENARIOS]
_SCENARIO_CUM_WEIGHTS: list[int] = []
_total = 0
for _, _w in _SCENARIOS:
    _total += _w
    _SCENARIO_CUM_WEIGHTS.append(_total)
del _total, _w

# Key order of a Harness AuditEvent as returned by the API (null fields omitted).
_KEY_ORDER = (
    "auditId",
    "resourceScope",
    "httpRequestInfo",
    "requestMetadata",
    "timestamp",
    "authenticationInfo",
    "module",
    "environment",
    "resource",
    "action",
    "auditEventData",
)

_MAX_COUNT = 1 << 24  # the ObjectId counter has 24 bits


def generate_events(
    count: int,
    start_ms: int,
    end_ms: int,
    seed: int = 0,
    *,
    account_id: str = DEFAULT_ACCOUNT_ID,
) -> list[dict]:
    """Return ``count`` invented AuditEvents with timestamps in ``[start_ms, end_ms]``.

    Deterministic for a given (count, start_ms, end_ms, seed, account_id). Events are returned
    oldest first, sorted by (timestamp, auditId). When ``count >= 2`` one event sits exactly at
    ``start_ms`` and one exactly at ``end_ms`` so both inclusive bounds get exercised; the rest
    are uniformly random (several events may share a millisecond).

    ``auditId`` is a 24-hex-digit ObjectId-like string: 8 hex digits of the timestamp in
    seconds, 10 of a per-call random "machine" value, 6 of an incrementing counter; unique
    within a call. Use different seeds for batches that may overlap in time.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")
    if count > _MAX_COUNT:
        raise ValueError(f"count must be at most {_MAX_COUNT}")
    if not isinstance(start_ms, int) or not isinstance(end_ms, int):
        raise ValueError("start_ms and end_ms must be ints (epoch milliseconds)")
    if start_ms < 0 or end_ms >= 0xFFFFFFFF * 1000:
        raise ValueError("timestamps must fit an ObjectId's 32-bit seconds field")
    if start_ms > end_ms:
        raise ValueError(f"start_ms {start_ms} is after end_ms {end_ms}")

    rng = random.Random(seed)
    span = end_ms - start_ms
    rand = rng.random
    timestamps = [start_ms + min(int(rand() * (span + 1)), span) for _ in range(count)]
    if count >= 2:
        timestamps[0] = start_ms
        timestamps[1] = end_ms
    timestamps.sort()

    machine = rng.getrandbits(40)
    counter = rng.getrandbits(24)
    funcs = _SCENARIO_FUNCS
    cum = _SCENARIO_CUM_WEIGHTS
    total = cum[-1]
    events: list[dict] = []
    append = events.append
    # Building hundreds of thousands of small dicts triggers the cyclic GC over and over
    # (these dicts hold no cycles): pausing it halves the time for large counts.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for ts in timestamps:
            body = funcs[bisect_right(cum, rand() * total)](rng, account_id, ts)
            body["auditId"] = f"{ts // 1000:08x}{machine:010x}{counter:06x}"
            body["timestamp"] = ts
            counter = (counter + 1) & 0xFFFFFF
            append({k: body[k] for k in _KEY_ORDER if k in body})
    finally:
        if gc_was_enabled:
            gc.enable()
    return events


def generate_burst(
    count: int,
    ts: int,
    seed: int = 0,
    *,
    account_id: str = DEFAULT_ACCOUNT_ID,
) -> list[dict]:
    """Return ``count`` events all stamped ``ts``: one bulk change, audited once per member.

    A role bound to a user group of ``count`` members (or a SCIM sync) by one actor in one
    request: the same actor, client IP, module (CORE), action (ROLE_ASSIGNMENT_CREATED),
    resource type (ROLE_ASSIGNMENT), role and resource group, scope; a distinct assignment
    identifier and assigned user (``auditEventData.principal``) per event. Deterministic for
    (count, ts, seed, account_id); oldest first like ``generate_events`` (sorted by auditId,
    all timestamps being equal). ``auditId``s are ObjectId-like, with a machine value drawn
    from their own seed stream, so they do not collide with ``generate_events``' in practice.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")
    if count > _MAX_COUNT:
        raise ValueError(f"count must be at most {_MAX_COUNT}")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < 0xFFFFFFFF * 1000:
        raise ValueError("ts must be an int (epoch ms) that fits an ObjectId's seconds field")
    rng = random.Random(f"burst:{seed}")
    machine = rng.getrandbits(40)
    counter = rng.getrandbits(24)
    actor = _pick(rng, _USERS)
    auth = _user_auth(actor, rng)
    ip = _USER_IP[actor[1]]
    scope = _scope(rng, account_id, "any")
    role = _pick(rng, ("_account_viewer", "_project_admin", "pipeline_operator"))
    group = _pick(rng, ("_all_resources", "prod_resources"))
    events: list[dict] = []
    for n in range(count):
        assignee = f"member{n:05d}@example.com"
        events.append(
            {
                "auditId": f"{ts // 1000:08x}{machine:010x}{(counter + n) & 0xFFFFFF:06x}",
                "resourceScope": dict(scope),
                "httpRequestInfo": {"requestMethod": "POST"},
                "requestMetadata": {"clientIP": ip},
                "timestamp": ts,
                "authenticationInfo": {
                    "principal": dict(auth["principal"]),
                    "labels": dict(auth["labels"]),
                },
                "module": "CORE",
                "resource": {"type": "ROLE_ASSIGNMENT", "identifier": _ident22(rng)},
                "action": "ROLE_ASSIGNMENT_CREATED",
                "auditEventData": {
                    "type": "RoleAssignmentAuditEventData",
                    "roleIdentifier": role,
                    "resourceGroupIdentifier": group,
                    "principal": {"type": "USER", "identifier": assignee},
                },
            }
        )
    events.sort(key=lambda e: e["auditId"])
    return events
