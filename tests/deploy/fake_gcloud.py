"""A fake ``gcloud`` for testing deploy.sh offline: records every call, models the resources.

The tests put it first on PATH as ``gcloud`` (deploy_sandbox.py: a shim that imports a copy).

Each call is appended to ``$FAKE_GCLOUD_LOG`` as one JSON line: its argv, how many bytes it
read on stdin (never what), whether ``HARNESS_API_KEY`` was in its environment, the content of
any ``--env-vars-file`` and of any ``--config-from-file`` or ``--policy-from-file`` as it was
when the call was made, the files of a ``--source`` directory, and its exit code.

Resources live in the file ``$FAKE_GCLOUD_STATE`` (marshal, not JSON: this runs some thirty
times per deploy, and ``import json`` alone would double its start-up time). ``describe``,
``list`` and ``get-iam-policy`` answer "absent" (exit 1, message on stderr) until the create or
add that makes the thing was recorded. Like the real services, creating needs the API enabled,
and a binding or a deploy needs what it names to exist, so steps in the wrong order fail here
too. Only the commands deploy.sh uses are modelled: anything else exits 3, so a test notices it.
So do the argument forms the real gcloud gets wrong or refuses: a short ``--topic`` for a
scheduler job (resolved before ``--project`` applies), a full ``--trigger-topic``, a
``--concurrency`` above 1 without a whole ``--cpu``. Full resource names
(``projects/P/topics/T``, ``projects/P/secrets/S``) must name the ``--project`` project.

The one payload kept is the secret's, in the state file, because ``secrets versions access``
must return it, exactly as Secret Manager does; it never reaches the log.

Knobs (environment): ``FAKE_GCLOUD_ACCOUNT`` the active account, empty for "not logged in";
``FAKE_GCLOUD_NO_PROJECT=1`` the project cannot be found; ``FAKE_GCLOUD_NO_ALPHA=1`` the
alpha component is not installed; ``FAKE_GCLOUD_FAIL`` as
``"<command words>:<count>"``, e.g. ``"functions deploy:1"``: the first <count> calls of that
command fail.
"""

import _json
import marshal
import os
import sys

API_OF_GROUP = {
    "storage": "storage.googleapis.com",
    "iam": "iam.googleapis.com",
    "secrets": "secretmanager.googleapis.com",
    "pubsub": "pubsub.googleapis.com",
    "functions": "cloudfunctions.googleapis.com",
    "run": "run.googleapis.com",
    "scheduler": "cloudscheduler.googleapis.com",
    "logging": "logging.googleapis.com",
    "monitoring": "monitoring.googleapis.com",
}
EMPTY_STATE = {
    "services": [],
    "buckets": [],
    "service_accounts": [],
    "secrets": {},
    "topics": [],
    "functions": {},
    "jobs": {},
    "metrics": {},
    "policies": {},
    "dashboards": {},
    "iam": {},
    "failures": {},
}


class Failed(Exception):
    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def parse(argv):
    positionals, flags = [], {}
    for arg in argv:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            flags[name] = value if "=" in arg else True
        else:
            positionals.append(arg)
    return positionals, flags


def not_found(what):
    raise Failed(f"ERROR: (gcloud) NOT_FOUND: {what} was not found")


class Gcloud:
    def __init__(self, state, argv):
        self.state = state
        self.positionals, self.flags = parse(argv)
        self.project = self.flags.get("project")
        self.out = []
        self.stdin_len = None
        self.source_files = None

    # --- helpers ---------------------------------------------------------------------------

    def need_api(self, group):
        api = API_OF_GROUP[group]
        if api not in self.state["services"]:
            raise Failed(f"ERROR: (gcloud) PERMISSION_DENIED: {api} has not been used in project")

    def sa_email(self, account_id):
        return f"{account_id}@{self.project}.iam.gserviceaccount.com"

    def short(self, name, collection):
        """The short name of a resource given short or as projects/P/<collection>/NAME."""
        prefix = f"projects/{self.project}/{collection}/"
        if name.startswith(prefix):
            return name[len(prefix) :]
        if "/" in name:
            raise Failed(f"fake gcloud: {name} is not in project {self.project}", 3)
        return name

    def need_member(self, member):
        email = member.removeprefix("serviceAccount:")
        if email.endswith(f"@{self.project}.iam.gserviceaccount.com") and (
            email not in self.state["service_accounts"]
        ):
            raise Failed(f"ERROR: INVALID_ARGUMENT: Service account {email} does not exist")

    def bindings(self, key):
        return self.state["iam"].setdefault(key, [])

    def print_policy(self, key):
        self.out.extend(f"{role}\t{member}" for role, member in self.bindings(key))

    def add_binding(self, key):
        member, role = self.flags["member"], self.flags["role"]
        self.need_member(member)
        if [role, member] not in self.bindings(key):
            self.bindings(key).append([role, member])

    def remove_binding(self, key):
        pair = [self.flags["role"], self.flags["member"]]
        if pair not in self.bindings(key):
            raise Failed("ERROR: Policy binding with the specified principal and role not found!")
        self.bindings(key).remove(pair)

    # --- commands --------------------------------------------------------------------------

    def auth_list(self, _args):
        account = os.environ.get("FAKE_GCLOUD_ACCOUNT", "deployer@example.com")
        if account:
            self.out.append(account)

    def version(self, _args):
        if not os.environ.get("FAKE_GCLOUD_NO_ALPHA"):
            self.out.append("2025.06.20")

    def projects_describe(self, args):
        if os.environ.get("FAKE_GCLOUD_NO_PROJECT"):
            not_found(f"project {args[0]}")
        self.out.append(args[0])

    def services_list(self, _args):
        self.out.extend(self.state["services"])

    def services_enable(self, args):
        for api in args:
            if api not in self.state["services"]:
                self.state["services"].append(api)

    def buckets_describe(self, args):
        self.need_api("storage")
        if args[0] not in self.state["buckets"]:
            not_found(f"bucket {args[0]}")
        self.out.append(args[0].removeprefix("gs://"))

    def buckets_create(self, args):
        self.need_api("storage")
        if args[0] in self.state["buckets"]:
            raise Failed("ERROR: HTTPError 409: The requested bucket name is not available.")
        self.state["buckets"].append(args[0])

    def buckets_iam(self, args, action):
        self.need_api("storage")
        if args[0] not in self.state["buckets"]:
            not_found(f"bucket {args[0]}")
        action(f"bucket:{args[0]}")

    def sa_describe(self, args):
        self.need_api("iam")
        if args[0] not in self.state["service_accounts"]:
            not_found(f"service account {args[0]}")
        self.out.append(args[0])

    def sa_create(self, args):
        self.need_api("iam")
        email = self.sa_email(args[0])
        if email in self.state["service_accounts"]:
            raise Failed("ERROR: ALREADY_EXISTS: Service account already exists")
        self.state["service_accounts"].append(email)

    def sa_delete(self, args):
        self.need_api("iam")
        if args[0] not in self.state["service_accounts"]:
            not_found(f"service account {args[0]}")
        self.state["service_accounts"].remove(args[0])

    def secret(self, name):
        self.need_api("secrets")
        name = self.short(name, "secrets")
        if name not in self.state["secrets"]:
            not_found(f"secret {name}")
        return self.state["secrets"][name]

    def secrets_describe(self, args):
        self.secret(args[0])
        self.out.append(f"projects/{self.project}/secrets/{self.short(args[0], 'secrets')}")

    def secrets_create(self, args):
        self.need_api("secrets")
        name = self.short(args[0], "secrets")
        if name in self.state["secrets"]:
            raise Failed("ERROR: ALREADY_EXISTS: Secret already exists")
        self.state["secrets"][name] = {"versions": []}

    def secrets_delete(self, args):
        self.secret(args[0])
        name = self.short(args[0], "secrets")
        del self.state["secrets"][name]
        self.state["iam"].pop(f"secret:{name}", None)

    def secrets_iam(self, args, action):
        self.secret(args[0])
        action(f"secret:{self.short(args[0], 'secrets')}")

    def versions_list(self, args):
        # Numbered from 1, newest first, all enabled; named in full as value(name) prints them
        # (with the project's number, which the fake takes to be 42).
        versions = self.secret(args[0])["versions"]
        secret = f"projects/42/secrets/{self.short(args[0], 'secrets')}"
        numbers = range(len(versions), 0, -1)[: int(self.flags.get("limit", len(versions)))]
        self.out.extend(f"{secret}/versions/{number}" for number in numbers)

    def versions_add(self, args):
        secret = self.secret(args[0])
        if self.flags.get("data-file") != "-":
            raise Failed("fake gcloud: deploy.sh must pass the key with --data-file=-", 3)
        payload = sys.stdin.buffer.read()
        self.stdin_len = len(payload)
        if not payload:
            raise Failed("ERROR: INVALID_ARGUMENT: the secret payload is empty")
        secret["versions"].append(payload.decode())

    def versions_access(self, args):
        secret, _, version = args[0].rpartition("/versions/")
        versions = self.secret(secret or self.flags["secret"])["versions"]
        if version != "latest" or not versions:
            not_found(f"version {args[0]}")
        self.out.append(versions[-1])

    def topic(self, name):
        self.need_api("pubsub")
        name = self.short(name, "topics")
        if name not in self.state["topics"]:
            not_found(f"topic {name}")
        return name

    def topic_describe(self, args):
        self.out.append(f"projects/{self.project}/topics/{self.topic(args[0])}")

    def topic_create(self, args):
        self.need_api("pubsub")
        name = self.short(args[0], "topics")
        if name in self.state["topics"]:
            raise Failed("ERROR: ALREADY_EXISTS: Resource already exists in the project")
        self.state["topics"].append(name)

    def topic_delete(self, args):
        name = self.topic(args[0])
        self.state["topics"].remove(name)
        # Its IAM policy goes with it.
        self.state["iam"].pop(f"topic:{name}", None)

    def topic_iam(self, args, action):
        action(f"topic:{self.topic(args[0])}")

    def function_describe(self, args):
        self.need_api("functions")
        function = self.state["functions"].get(args[0])
        if function is None:
            not_found(f"function {args[0]}")
        self.out.append(f"{function['state']}\t{function['labels'].get('deploy_hash', '')}")

    def function_deploy(self, args):
        for api in ("cloudfunctions", "run", "cloudbuild", "artifactregistry", "eventarc"):
            if f"{api}.googleapis.com" not in self.state["services"]:
                raise Failed(f"ERROR: (gcloud) {api}.googleapis.com is not enabled")
        sa = self.flags.get("service-account", "")
        if sa not in self.state["service_accounts"]:
            raise Failed(f"ERROR: INVALID_ARGUMENT: service account {sa} does not exist")
        secret_ref, _, version = (
            self.flags.get("set-secrets", "=:").split("=", 1)[1].rpartition(":")
        )
        secret_name = self.short(secret_ref, "secrets")
        count = len(self.state["secrets"].get(secret_name, {}).get("versions", []))
        if not (version.isdigit() and 1 <= int(version) <= count):  # pinned, never "latest"
            raise Failed(f"ERROR: secret {secret_name} has no version {version} to mount")
        topic = str(self.flags.get("trigger-topic"))
        if "/" in topic:
            raise Failed("ERROR: (gcloud.functions.deploy) --trigger-topic takes a topic id", 3)
        if topic not in self.state["topics"]:
            raise Failed("ERROR: the trigger topic does not exist")
        concurrency = int(self.flags.get("concurrency", 1))
        if concurrency > 1 and float(self.flags.get("cpu", 0)) < 1:
            raise Failed("ERROR: INVALID_ARGUMENT: concurrency above 1 needs at least 1 CPU")
        source = self.flags.get("source")
        if not isinstance(source, str) or not os.path.isdir(source):
            raise Failed(f"ERROR: (gcloud.functions.deploy) no source directory {source}")
        self.source_files = sorted(
            os.path.relpath(os.path.join(root, name), source)
            for root, _, names in os.walk(source)
            for name in names
        )
        pairs = str(self.flags.get("update-labels", "")).split(",")
        labels = dict(pair.split("=", 1) for pair in pairs if pair)
        function = self.state["functions"].setdefault(args[0], {"labels": {}})
        function["state"] = "ACTIVE"
        function["labels"].update(labels)

    def function_delete(self, args):
        self.need_api("functions")
        if args[0] not in self.state["functions"]:
            not_found(f"function {args[0]}")
        del self.state["functions"][args[0]]
        # The Cloud Run service goes with it, and its IAM policy with the service.
        self.state["iam"].pop(f"run:{args[0]}", None)

    def run_iam(self, args, action):
        self.need_api("run")
        if args[0] not in self.state["functions"]:
            not_found(f"service {args[0]}")
        action(f"run:{args[0]}")

    def job(self, name):
        self.need_api("scheduler")
        if name not in self.state["jobs"]:
            not_found(f"job {name}")
        return self.state["jobs"][name]

    def job_describe(self, args):
        job = self.job(args[0])
        line = f"{job['schedule']}\t{job['time_zone']}\t{job['topic']}"
        if "pubsubTarget.attributes" in str(self.flags.get("format")):
            # gcloud's value() prints a map as KEY=VALUE pairs joined by ";".
            line += "\t" + ";".join(f"{k}={v}" for k, v in sorted(job["attributes"].items()))
        self.out.append(line)

    def job_write(self, args, job):
        topic = str(self.flags.get("topic"))
        if not topic.startswith("projects/"):
            # The real gcloud resolves it while reading arguments, before --project applies.
            raise Failed("fake gcloud: scheduler --topic must be projects/P/topics/T", 3)
        if self.short(topic, "topics") not in self.state["topics"]:
            raise Failed("ERROR: the target topic does not exist")
        pairs = str(self.flags.get("attributes") or self.flags.get("update-attributes") or "")
        attributes = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
        job.update(
            schedule=self.flags["schedule"],
            time_zone=self.flags["time-zone"],
            topic=topic,
            message_body=self.flags["message-body"],
            attributes=job.get("attributes", {}) | attributes,
        )

    def job_create(self, args):
        self.need_api("scheduler")
        if args[0] in self.state["jobs"]:
            raise Failed("ERROR: ALREADY_EXISTS: Job already exists")
        self.job_write(args, self.state["jobs"].setdefault(args[0], {}))

    def job_update(self, args):
        self.job_write(args, self.job(args[0]))

    def job_delete(self, args):
        self.job(args[0])
        del self.state["jobs"][args[0]]

    def read_file(self, flag):
        with open(self.flags[flag]) as file:
            return file.read()

    def metric(self, name):
        self.need_api("logging")
        if name not in self.state["metrics"]:
            not_found(f"metric {name}")
        return self.state["metrics"][name]

    def metric_describe(self, args):
        self.out.append(self.metric(args[0])["description"])

    def metric_write(self, name):
        import json  # only here: most calls never need it (see the module docstring)

        config = json.loads(self.read_file("config-from-file"))
        self.state["metrics"][name] = {"description": config["description"], "config": config}

    def metric_create(self, args):
        self.need_api("logging")
        if args[0] in self.state["metrics"]:
            raise Failed("ERROR: ALREADY_EXISTS: metric already exists")
        self.metric_write(args[0])

    def metric_update(self, args):
        self.metric(args[0])
        self.metric_write(args[0])

    def metric_delete(self, args):
        self.metric(args[0])
        del self.state["metrics"][args[0]]

    def policy(self, name):
        self.need_api("monitoring")
        if name not in self.state["policies"]:
            not_found(f"alert policy {name}")
        return self.state["policies"][name]

    def policy_write(self, name):
        import json

        policy = json.loads(self.read_file("policy-from-file"))
        for condition in policy["conditions"]:
            for kind in ("conditionThreshold", "conditionAbsent"):
                if kind in condition:
                    metric_type = condition[kind]["filter"].split('"')[1]
                    metric = metric_type.removeprefix("logging.googleapis.com/user/")
                    if metric not in self.state["metrics"]:
                        raise Failed(f"ERROR: INVALID_ARGUMENT: no metric {metric_type}")
        self.state["policies"][name] = {"labels": policy.get("userLabels", {}), "policy": policy}

    def policy_list(self, _args):
        self.need_api("monitoring")
        key, _, value = str(self.flags.get("filter", "")).removeprefix("userLabels.").partition("=")
        for name, policy in self.state["policies"].items():
            if policy["labels"].get(key) == value:
                self.out.append(f"{name}\t{policy['labels'].get('deploy_hash', '')}")

    def policy_create(self, _args):
        self.need_api("monitoring")
        self.state["policy_serial"] = self.state.get("policy_serial", 1000) + 1
        self.policy_write(f"projects/{self.project}/alertPolicies/{self.state['policy_serial']}")

    def policy_update(self, args):
        self.policy(args[0])
        self.policy_write(args[0])

    def policy_delete(self, args):
        self.policy(args[0])
        del self.state["policies"][args[0]]

    def dashboard(self, name):
        self.need_api("monitoring")
        if name not in self.state["dashboards"]:
            not_found(f"dashboard {name}")
        return self.state["dashboards"][name]

    def dashboard_write(self, name):
        import json

        dashboard = json.loads(self.read_file("config-from-file"))
        self.state["dashboards"][name] = {
            "labels": dashboard.get("labels", {}),
            "config": dashboard,
        }

    def dashboard_list(self, _args):
        self.need_api("monitoring")
        key, _, value = str(self.flags.get("filter", "")).removeprefix("labels.").partition("=")
        for name, dashboard in self.state["dashboards"].items():
            if dashboard["labels"].get(key) == value:
                self.out.append(f"{name}\t{dashboard['labels'].get('deploy_hash', '')}")

    def dashboard_create(self, _args):
        self.need_api("monitoring")
        self.state["dashboard_serial"] = self.state.get("dashboard_serial", 2000) + 1
        self.dashboard_write(f"projects/{self.project}/dashboards/{self.state['dashboard_serial']}")

    def dashboard_update(self, args):
        self.dashboard(args[0])
        self.dashboard_write(args[0])

    def dashboard_delete(self, args):
        self.dashboard(args[0])
        del self.state["dashboards"][args[0]]

    # --- dispatch --------------------------------------------------------------------------

    def commands(self):
        return {
            ("auth", "list"): self.auth_list,
            ("version",): self.version,
            ("projects", "describe"): self.projects_describe,
            ("services", "list"): self.services_list,
            ("services", "enable"): self.services_enable,
            ("storage", "buckets", "describe"): self.buckets_describe,
            ("storage", "buckets", "create"): self.buckets_create,
            ("storage", "buckets", "get-iam-policy"): lambda a: self.buckets_iam(
                a, self.print_policy
            ),
            ("storage", "buckets", "add-iam-policy-binding"): lambda a: self.buckets_iam(
                a, self.add_binding
            ),
            ("storage", "buckets", "remove-iam-policy-binding"): lambda a: self.buckets_iam(
                a, self.remove_binding
            ),
            ("iam", "service-accounts", "describe"): self.sa_describe,
            ("iam", "service-accounts", "create"): self.sa_create,
            ("iam", "service-accounts", "delete"): self.sa_delete,
            ("secrets", "describe"): self.secrets_describe,
            ("secrets", "create"): self.secrets_create,
            ("secrets", "delete"): self.secrets_delete,
            ("secrets", "get-iam-policy"): lambda a: self.secrets_iam(a, self.print_policy),
            ("secrets", "add-iam-policy-binding"): lambda a: self.secrets_iam(a, self.add_binding),
            ("secrets", "versions", "list"): self.versions_list,
            ("secrets", "versions", "add"): self.versions_add,
            ("secrets", "versions", "access"): self.versions_access,
            ("pubsub", "topics", "describe"): self.topic_describe,
            ("pubsub", "topics", "create"): self.topic_create,
            ("pubsub", "topics", "delete"): self.topic_delete,
            ("pubsub", "topics", "get-iam-policy"): lambda a: self.topic_iam(a, self.print_policy),
            ("pubsub", "topics", "add-iam-policy-binding"): lambda a: self.topic_iam(
                a, self.add_binding
            ),
            ("functions", "describe"): self.function_describe,
            ("functions", "deploy"): self.function_deploy,
            ("functions", "delete"): self.function_delete,
            ("run", "services", "get-iam-policy"): lambda a: self.run_iam(a, self.print_policy),
            ("run", "services", "add-iam-policy-binding"): lambda a: self.run_iam(
                a, self.add_binding
            ),
            ("scheduler", "jobs", "describe"): self.job_describe,
            ("scheduler", "jobs", "create", "pubsub"): self.job_create,
            ("scheduler", "jobs", "update", "pubsub"): self.job_update,
            ("scheduler", "jobs", "delete"): self.job_delete,
            ("logging", "metrics", "describe"): self.metric_describe,
            ("logging", "metrics", "create"): self.metric_create,
            ("logging", "metrics", "update"): self.metric_update,
            ("logging", "metrics", "delete"): self.metric_delete,
            ("alpha", "monitoring", "policies", "list"): self.policy_list,
            ("alpha", "monitoring", "policies", "create"): self.policy_create,
            ("alpha", "monitoring", "policies", "update"): self.policy_update,
            ("alpha", "monitoring", "policies", "delete"): self.policy_delete,
            ("monitoring", "dashboards", "list"): self.dashboard_list,
            ("monitoring", "dashboards", "create"): self.dashboard_create,
            ("monitoring", "dashboards", "update"): self.dashboard_update,
            ("monitoring", "dashboards", "delete"): self.dashboard_delete,
        }

    def run(self):
        matches = [
            (words, handler)
            for words, handler in self.commands().items()
            if tuple(self.positionals[: len(words)]) == words
        ]
        if not matches:
            raise Failed(f"fake gcloud: unsupported command {self.positionals}", 3)
        words, handler = max(matches, key=lambda match: len(match[0]))
        if words[0] not in ("auth", "projects", "version") and not self.project:
            raise Failed(f"fake gcloud: {' '.join(words)} without --project", 3)
        self.maybe_fail(" ".join(words))
        handler(self.positionals[len(words) :])

    def maybe_fail(self, command):
        wanted, _, count = os.environ.get("FAKE_GCLOUD_FAIL", "").rpartition(":")
        if wanted != command:
            return
        failed = self.state["failures"].get(command, 0)
        if failed < int(count):
            self.state["failures"][command] = failed + 1
            raise Failed(f"ERROR: (gcloud) injected failure {failed + 1} of {count}")


def to_json(value):
    """JSON for the log record's few types, without importing json (see the docstring)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _json.encode_basestring_ascii(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(to_json, value)) + "]"
    return "{" + ", ".join(f"{to_json(key)}: {to_json(item)}" for key, item in value.items()) + "}"


def main(argv):
    state_path = os.environ["FAKE_GCLOUD_STATE"]
    state = marshal.loads(marshal.dumps(EMPTY_STATE))
    if os.path.exists(state_path):
        with open(state_path, "rb") as file:
            state.update(marshal.load(file))
    gcloud = Gcloud(state, argv)
    code, error = 0, ""
    try:
        gcloud.run()
    except Failed as failure:
        code, error = failure.code, str(failure)
    with open(state_path, "wb") as file:
        marshal.dump(state, file)

    files = {}
    for flag in ("env-vars-file", "config-from-file", "policy-from-file"):
        path = gcloud.flags.get(flag)
        if isinstance(path, str) and os.path.isfile(path):
            with open(path) as file:
                files[flag] = file.read()
    record = {
        "argv": argv,
        "stdin_len": gcloud.stdin_len,
        "env_has_api_key": "HARNESS_API_KEY" in os.environ,
        "env_vars_file": files.pop("env-vars-file", None),
        "config_file": files.popitem()[1] if files else None,
        "source_files": gcloud.source_files,
        "exit": code,
    }
    with open(os.environ["FAKE_GCLOUD_LOG"], "a") as log:
        log.write(to_json(record) + "\n")

    if gcloud.out:
        sys.stdout.write("\n".join(gcloud.out) + "\n")
    if error:
        sys.stderr.write(error + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
