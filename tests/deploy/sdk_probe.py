"""Run by the Cloud SDK's own Python (not by pytest): gcloud's code, used on deploy.sh's output.

    python3 sdk_probe.py SDK_ROOT zip SOURCE_DIR
        Builds the archive ``gcloud functions deploy --source=SOURCE_DIR`` uploads, with gcloud's
        own code (source_util.CreateSourcesZipFile, which applies .gcloudignore as the zip step
        sees it), and prints its entries as JSON: {"name": "sha256 of the content"}, directory
        entries with null.
    python3 sdk_probe.py SDK_ROOT messages KIND FILE [KIND FILE ...]
        Parses each file as gcloud does for ``logging metrics create --config-from-file``
        (KIND metric), ``alpha monitoring policies create --policy-from-file`` (KIND policy) or
        ``monitoring dashboards create --config-from-file`` (KIND dashboard), and prints JSON
        {"FILE": [fields gcloud did not recognise]}. gcloud itself keeps such fields silently
        and sends them, and only the API refuses them.

No credentials are needed or read: nothing here talks to Google.
"""

import hashlib
import json
import os
import sys
import tempfile
import zipfile


def use_sdk(sdk_root):
    sys.path[:0] = [os.path.join(sdk_root, "lib"), os.path.join(sdk_root, "lib", "third_party")]


def archive(source):
    from googlecloudsdk.command_lib.functions import source_util

    entries = {}
    with tempfile.TemporaryDirectory() as scratch:
        path = source_util.CreateSourcesZipFile(scratch, source)
        with zipfile.ZipFile(path) as zipped:
            for info in zipped.infolist():
                if info.is_dir():
                    entries[info.filename] = None
                else:
                    entries[info.filename] = hashlib.sha256(zipped.read(info)).hexdigest()
    return entries


def unrecognised(message, path=""):
    from apitools.base.protorpclite import messages

    found = [f"{path}.{name}" for name in message.all_unrecognized_fields()]
    for field in message.all_fields():
        value = message.get_assigned_value(field.name)
        if isinstance(field, messages.MessageField) and value is not None:
            for item in value if field.repeated else [value]:
                found += unrecognised(item, f"{path}.{field.name}")
    return found


def parse_messages(pairs):
    from apitools.base.py import encoding
    from googlecloudsdk.api_lib.logging import util as logging_util
    from googlecloudsdk.api_lib.util import apis
    from googlecloudsdk.command_lib.monitoring import util as monitoring_util
    from googlecloudsdk.core import yaml

    monitoring = apis.GetMessagesModule("monitoring", "v3")
    result = {}
    for kind, path in pairs:
        with open(path) as file:
            text = file.read()
        if kind == "policy":
            message = monitoring_util.MessageFromString(text, monitoring.AlertPolicy, "AlertPolicy")
        elif kind == "dashboard":  # the v1 API; gcloud loads the file as YAML
            dashboards = apis.GetMessagesModule("monitoring", "v1")
            message = encoding.DictToMessage(yaml.load(text), dashboards.Dashboard)
        else:
            message = encoding.DictToMessage(yaml.load(text), logging_util.GetMessages().LogMetric)
        result[path] = unrecognised(message)
    return result


def main(argv):
    use_sdk(argv[1])
    if argv[2] == "zip":
        result = archive(argv[3])
    else:
        rest = argv[3:]
        result = parse_messages(zip(rest[::2], rest[1::2], strict=True))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
