#!/usr/bin/env bash
# deploy.sh: one command from an empty Google Cloud project to the Harness audit collector
# running on a schedule, and (with --destroy) back again.
#
# Every step looks before it touches: describe, then create only what is missing, so a second
# run with the same inputs changes nothing. --dry-run runs only the read-only describe/list
# commands and prints a script of every command that would change something (other lines are
# comments; the files it names stay in .deploy/). The Harness API key travels on stdin to
# Secret Manager and nowhere else: not in a command line, not in output, not in the
# environment of any child process.
#
# Every gcloud command line here is checked against the real gcloud's parser, and the upload
# against its zip code, by tests/deploy/test_deploy_gcloud.py (make deploy-check).
#
# Run ./deploy.sh --help for the variables; the README's "Deploy" section explains each step.

set -euo pipefail

if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
  printf 'deploy.sh: error: needs bash 4.4 or newer, this is %s (on macOS: brew install bash)\n' \
    "$BASH_VERSION" >&2
  exit 2
fi

# Take the key out of the environment first thing: from here on it lives only in this shell,
# so no gcloud process can see it (or log it) through its environment.
# (declare +x: a variable of this name exported by the caller must not carry the key onwards.)
API_KEY=${HARNESS_API_KEY-}
declare +x API_KEY
unset HARNESS_API_KEY

SCRIPT_NAME=${0##*/}
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
readonly SCRIPT_NAME SCRIPT_DIR

# Exit codes: 0 done (or nothing to do); 1 a step failed or you declined; 2 fix the input or
# the environment (a variable, gcloud, the login, no terminal to ask on).
readonly EXIT_FAILED=1 EXIT_USAGE=2

# Event-driven functions may run 540 s at most; the function's MAX_RUN_SECONDS must stay below
# it so a run stops and checkpoints before the platform kills it.
readonly FUNCTION_TIMEOUT_SECONDS=540
readonly FUNCTION_RUNTIME=python312
readonly FUNCTION_MEMORY=512Mi
# Up to three deliveries at once on the one instance (--max-instances=1): the run that is
# finishing, the continuation it published to its own topic (to go on with a backlog at once),
# and a scheduled tick. With the default concurrency of 1, a delivery that finds the one
# instance busy is refused with 429, and without --retry nothing delivers it again. The second
# and third return at once while the first holds the checkpoint's lease. Concurrency above 1
# needs a whole vCPU; 512Mi alone gives a third of one.
readonly FUNCTION_CONCURRENCY=3
readonly FUNCTION_CPU=1
readonly TIME_ZONE=Etc/UTC
# The function's own defaults (harness_audit/config.py), used here only to print the SecOps
# feed settings and to check that the checkpoint lies outside what the feed reads.
readonly DEFAULT_GCS_PREFIX=harness/audit
readonly DEFAULT_STATE_KEY=harness/state/audit-state.json

readonly REQUIRED_APIS=(
  cloudfunctions.googleapis.com
  run.googleapis.com
  cloudbuild.googleapis.com
  artifactregistry.googleapis.com
  eventarc.googleapis.com
  pubsub.googleapis.com
  cloudscheduler.googleapis.com
  secretmanager.googleapis.com
  storage.googleapis.com
  iam.googleapis.com
  logging.googleapis.com
  monitoring.googleapis.com
)

# The function's configuration, passed through to it when set and not empty. HARNESS_API_KEY
# is deliberately absent: the function gets it from Secret Manager via --set-secrets.
readonly FUNCTION_CONFIG_VARS=(
  HARNESS_ACCOUNT_ID GCS_BUCKET HARNESS_API_BASE GCS_PREFIX STATE_KEY PAGE_SIZE
  START_MINUTES_BACK FILTER_MODULES FILTER_ACTIONS STATIC_FILTER MAX_RETRIES MAX_RUN_SECONDS
  OVERLAP_SECONDS MAX_OBJECT_MB OUTPUT_FORMAT MAX_REQUESTS_PER_MINUTE ALERT_LAG_MINUTES
  TRIGGER_TOPIC MALLOC_MMAP_THRESHOLD_
)
readonly NUMERIC_CONFIG_VARS=(PAGE_SIZE START_MINUTES_BACK MAX_RETRIES MAX_RUN_SECONDS
  OVERLAP_SECONDS MAX_REQUESTS_PER_MINUTE ALERT_LAG_MINUTES)
# The function's default for ALERT_LAG_MINUTES, which the alert policy uses too.
readonly DEFAULT_ALERT_LAG_MINUTES=180
# What gcloud uploads: exactly these, copied into a staging directory (see stage_source).
readonly SOURCE_FILES=(main.py requirements.txt)
readonly SOURCE_PACKAGE=harness_audit

# The runtime service account creates data parts and lists and reads them back (to skip events
# already written), and reads and overwrites the checkpoint (which also holds the run's lease)
# under a generation precondition; overwriting an object needs storage.objects.delete.
# objectCreator can only create; objectAdmin adds object ACL and IAM administration it has no
# use for. objectUser is exactly get, list, create, update and delete of objects, with no bucket
# or IAM administration, and it is granted on the bucket only.
readonly RUNTIME_BUCKET_ROLE=roles/storage.objectUser
readonly SECRET_ROLE=roles/secretmanager.secretAccessor
readonly INVOKER_ROLE=roles/run.invoker
# To publish a continuation to its own trigger topic, granted on that one topic.
readonly PUBLISHER_ROLE=roles/pubsub.publisher
# The SecOps feed lists and reads objects (objectViewer) and reads bucket metadata
# (legacyBucketReader gives storage.buckets.get, which the transfer checks first).
readonly SECOPS_BUCKET_ROLES=(roles/storage.objectViewer roles/storage.legacyBucketReader)

DRY_RUN=0
ASSUME_YES=0
DESTROY=0
CONFIRMED=0
SKIP_HARNESS_CHECK=${SKIP_HARNESS_CHECK:-0}
CHANGES=0
SUMMARY=()

usage() {
  cat <<'EOF'
Usage: ./deploy.sh [--dry-run] [--yes] [--destroy] [--OPTION=VALUE ...]

Deploys the Harness audit collector: APIs, bucket, runtime service account, the API key in
Secret Manager, Pub/Sub topic, Cloud Run function (gen2), Cloud Scheduler job, log-based
metrics with an alert policy, and read access for the Google SecOps feed. Idempotent: a second
run with the same inputs changes nothing.

  --dry-run   run only read-only gcloud commands; print a shell script of every command that
              would change something (the files it names are kept in .deploy/)
  --yes, -y   do not ask before the first change (needed when there is no terminal)
  --destroy   remove what deploy.sh created (job, function, alert policy, metrics, topic, secret,
              service account, bucket role bindings); never the bucket or its objects
  --help, -h  this text

Environment variables (or the option in brackets):
  PROJECT_ID              required  [--project]
  GCS_BUCKET              required  [--bucket]  created in REGION unless it exists
  HARNESS_ACCOUNT_ID      required  [--account-id] (not needed for --destroy)
  REGION                  default us-central1  [--region]
  HARNESS_API_KEY         stored as a new secret version when set and different; when unset the
                          stored key is kept, or asked for on the terminal (input hidden) if there
                          is none. There is no option for it: a key on a command line leaks.
  SECOPS_INSTANCE         optional: the SecOps customer id, to create the feed, with SECOPS_REGION
                          (us, eu, europe-west2...) and SECOPS_PROJECT (default PROJECT_ID)
  SECOPS_SERVICE_ACCOUNT  without SECOPS_INSTANCE: the feed's account (SecOps "Get Service
                          Account") to grant  [--secops-service-account]
  --skip-harness-check    deploy without first asking Harness whether it accepts the key
  SCHEDULE                default "0 * * * *", 5-field cron, UTC  [--schedule]
  FUNCTION_NAME           default harness-audit-collector  [--function-name]
  RETRY_ON_FAILURE        default false; true deploys the function with --retry
  ALERT_LAG_MINUTES       default 180: the alert fires when the collected data is older
  NOTIFICATION_CHANNEL    optional: projects/PROJECT/notificationChannels/ID, attached to the
                          alert policy  [--notification-channel]
  Passed through to the function when set: HARNESS_API_BASE GCS_PREFIX STATE_KEY PAGE_SIZE
  START_MINUTES_BACK FILTER_MODULES FILTER_ACTIONS STATIC_FILTER MAX_RETRIES MAX_RUN_SECONDS
  (below 540) OVERLAP_SECONDS MAX_OBJECT_MB OUTPUT_FORMAT MAX_REQUESTS_PER_MINUTE (0-1000)
  ALERT_LAG_MINUTES. TRIGGER_TOPIC is set to the function's own topic.

Exit status: 0 done, 1 a step failed or you declined, 2 fix the input or the environment.
EOF
}

# What the script says. In a dry run each line is a shell comment, so that the output as a
# whole is a script of the commands that would change something.
say() {
  if ((DRY_RUN)); then
    printf '# %s\n' "$*"
  else
    printf '%s\n' "$*"
  fi
}
warn() { printf '%s: warning: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit "$EXIT_FAILED"; }
die_usage() { printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit "$EXIT_USAGE"; }

# --- arguments and configuration --------------------------------------------------------------

option_variable() {
  case $1 in
    --project) printf PROJECT_ID ;;
    --region) printf REGION ;;
    --bucket) printf GCS_BUCKET ;;
    --account-id) printf HARNESS_ACCOUNT_ID ;;
    --function-name) printf FUNCTION_NAME ;;
    --schedule) printf SCHEDULE ;;
    --secops-service-account) printf SECOPS_SERVICE_ACCOUNT ;;
    --notification-channel) printf NOTIFICATION_CHANNEL ;;
    *) return 1 ;;
  esac
}

parse_args() {
  local arg name value variable
  while (($#)); do
    arg=$1
    shift
    case $arg in
      --dry-run) DRY_RUN=1 ;;
      -y | --yes) ASSUME_YES=1 ;;
      --destroy) DESTROY=1 ;;
      --skip-harness-check) SKIP_HARNESS_CHECK=1 ;;
      -h | --help) usage; exit 0 ;;
      --api-key | --api-key=* | --harness-api-key | --harness-api-key=*)
        die_usage "the API key is not taken as an option (a command line is visible to every" \
          "process on the machine): export HARNESS_API_KEY, or leave it unset to be asked" ;;
      --*)
        name=${arg%%=*}
        variable=$(option_variable "$name") || die_usage "unknown option '$name' (see --help)"
        if [[ $arg == *=* ]]; then
          value=${arg#*=}
        else
          (($#)) || die_usage "option $name needs a value (see --help)"
          value=$1
          shift
        fi
        printf -v "$variable" '%s' "$value"
        ;;
      *) die_usage "unexpected argument '$arg' (see --help)" ;;
    esac
  done
}

PROBLEMS=()
problem() { PROBLEMS+=("$*"); }

valid_bucket_name() {
  local name=$1
  [[ ${#name} -ge 3 && ${#name} -le 63 ]] || return 1
  [[ $name =~ ^[a-z0-9][a-z0-9._-]*[a-z0-9]$ ]] || return 1
  [[ $name != *..* && $name != goog* && $name != *google* && $name != *g00gle* ]] || return 1
  [[ ! $name =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]
}

# One cron value: a number in [low, high], or a three-letter name when the field has names.
valid_cron_value() {
  local value=$1 low=$2 high=$3 names=$4
  if [[ $value =~ ^[0-9]{1,2}$ ]]; then
    ((10#$value >= low && 10#$value <= high))
  else
    [[ -n $names && ${#value} -eq 3 && " $names " == *" ${value^^} "* ]]
  fi
}

# One field of a 5-field (unix-cron) schedule: a comma list of *, N, N-M, each with an
# optional /STEP.
valid_cron_field() {
  local field=$1 low=$2 high=$3 names=${4-} item base step range_start range_end
  local -a items
  [[ $field =~ ^[0-9A-Za-z*/,-]+$ && $field != ,* && $field != *, && $field != *,,* ]] ||
    return 1
  IFS=, read -ra items <<<"$field"
  for item in "${items[@]}"; do
    base=${item%%/*}
    if [[ $item == */* ]]; then
      step=${item#*/}
      [[ $step =~ ^[0-9]{1,2}$ ]] && ((10#$step >= 1)) || return 1
    fi
    if [[ $base == '*' ]]; then
      continue
    elif [[ $base == *-* ]]; then
      range_start=${base%%-*}
      range_end=${base#*-}
      valid_cron_value "$range_start" "$low" "$high" "$names" || return 1
      valid_cron_value "$range_end" "$low" "$high" "$names" || return 1
    else
      valid_cron_value "$base" "$low" "$high" "$names" || return 1
    fi
  done
}

valid_cron() {
  local -a fields
  read -ra fields <<<"$1"
  ((${#fields[@]} == 5)) || return 1
  valid_cron_field "${fields[0]}" 0 59 &&
    valid_cron_field "${fields[1]}" 0 23 &&
    valid_cron_field "${fields[2]}" 1 31 &&
    valid_cron_field "${fields[3]}" 1 12 "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC" &&
    valid_cron_field "${fields[4]}" 0 7 "SUN MON TUE WED THU FRI SAT"
}

# Lowercase, digits and dashes, starting with a letter, at most 49 characters (the limit of
# the Cloud Run service that carries a gen2 function): valid as a function, service, topic,
# secret and scheduler job name alike.
valid_function_name() {
  [[ ${#1} -ge 3 && ${#1} -le 49 && $1 =~ ^[a-z]([a-z0-9-]*[a-z0-9])?$ ]]
}

apply_defaults() {
  PROJECT_ID=${PROJECT_ID-}
  GCS_BUCKET=${GCS_BUCKET-}
  HARNESS_ACCOUNT_ID=${HARNESS_ACCOUNT_ID-}
  REGION=${REGION:-us-central1}
  SCHEDULE=${SCHEDULE:-0 * * * *}
  FUNCTION_NAME=${FUNCTION_NAME:-harness-audit-collector}
  RETRY_ON_FAILURE=${RETRY_ON_FAILURE:-false}
  SECOPS_SERVICE_ACCOUNT=${SECOPS_SERVICE_ACCOUNT-}
  SECOPS_SERVICE_ACCOUNT=${SECOPS_SERVICE_ACCOUNT#serviceAccount:}
  NOTIFICATION_CHANNEL=${NOTIFICATION_CHANNEL-}

  # Names derived from the function's, so that two collectors can live in one project.
  TOPIC_NAME=${FUNCTION_NAME}-trigger
  JOB_NAME=${FUNCTION_NAME}-schedule
  SECRET_NAME=${FUNCTION_NAME}-api-key
  # Full resource names wherever gcloud resolves a resource from an argument: some commands
  # resolve a short name while reading their arguments, before --project applies (scheduler's
  # --topic then fails, or silently takes the default project's topic).
  TOPIC_PATH=projects/${PROJECT_ID}/topics/${TOPIC_NAME}
  SECRET_PATH=projects/${PROJECT_ID}/secrets/${SECRET_NAME}
  # The function republishes to its own trigger topic to go on with a backlog at once. Always
  # this topic, whatever the environment says (read through FUNCTION_CONFIG_VARS).
  # shellcheck disable=SC2034
  TRIGGER_TOPIC=$TOPIC_PATH
  # glibc otherwise raises its mmap threshold once a part's 8 MB buffer is freed, so the
  # next parts come from a heap that never shrinks: memory then grows with volume (make
  # bench measured +11.8 MB from 100k to 200k events without it, +4.6 MB with it).
  # shellcheck disable=SC2034
  MALLOC_MMAP_THRESHOLD_=131072
  # Log-based metrics (logging.googleapis.com/user/NAME) and the alert policy, which carries
  # this label to be found again.
  METRIC_LAG=${FUNCTION_NAME}_lag_seconds
  METRIC_FAILED=${FUNCTION_NAME}_runs_failed
  METRIC_OK=${FUNCTION_NAME}_runs_ok
  POLICY_LABEL=harness_collector
  EFFECTIVE_ALERT_LAG_MINUTES=${ALERT_LAG_MINUTES:-$DEFAULT_ALERT_LAG_MINUTES}
  # Files gcloud reads (the upload, the env-vars file, metric and policy definitions) are kept
  # here, so that what --dry-run prints can be run as it is. Git ignores .deploy/.
  DEPLOY_DIR=$SCRIPT_DIR/.deploy/$FUNCTION_NAME
  # A service account id has 6-30 characters: shorten the function's name, keep the suffix.
  local sa_base=${FUNCTION_NAME:0:27}
  while [[ $sa_base == *- ]]; do sa_base=${sa_base%-}; done
  SA_ID=${sa_base}-sa
  SA_EMAIL=${SA_ID}@${PROJECT_ID}.iam.gserviceaccount.com
  SA_MEMBER=serviceAccount:${SA_EMAIL}

  # What the function will use (its defaults when unset), for the feed settings.
  EFFECTIVE_PREFIX=${GCS_PREFIX:-$DEFAULT_GCS_PREFIX}
  while [[ $EFFECTIVE_PREFIX == /* ]]; do EFFECTIVE_PREFIX=${EFFECTIVE_PREFIX#/}; done
  while [[ $EFFECTIVE_PREFIX == */ ]]; do EFFECTIVE_PREFIX=${EFFECTIVE_PREFIX%/}; done
  EFFECTIVE_STATE_KEY=${STATE_KEY:-$DEFAULT_STATE_KEY}
  while [[ $EFFECTIVE_STATE_KEY == /* ]]; do EFFECTIVE_STATE_KEY=${EFFECTIVE_STATE_KEY#/}; done
  if [[ -n $EFFECTIVE_PREFIX ]]; then
    FEED_URI=gs://${GCS_BUCKET}/${EFFECTIVE_PREFIX}/
  else
    FEED_URI=gs://${GCS_BUCKET}/
  fi
}

state_key_inside_prefix() {
  [[ -z $EFFECTIVE_PREFIX || $EFFECTIVE_STATE_KEY == "$EFFECTIVE_PREFIX"/* ]]
}

validate_config() {
  local name value
  if [[ -z $PROJECT_ID ]]; then
    problem "PROJECT_ID is not set: export PROJECT_ID=<your project id> (or --project=...)"
  elif [[ ! $PROJECT_ID =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]]; then
    problem "PROJECT_ID='$PROJECT_ID' is not a project id: 6-30 lowercase letters, digits and" \
      "dashes, starting with a letter (the id, not the project's display name or number)"
  fi

  if [[ -z $GCS_BUCKET ]]; then
    problem "GCS_BUCKET is not set: export GCS_BUCKET=<bucket name> (created if it does not" \
      "exist; or --bucket=...)"
  elif [[ $GCS_BUCKET == gs://* ]]; then
    problem "GCS_BUCKET='$GCS_BUCKET': give the bucket name only, without gs:// or a path" \
      "(put the path in GCS_PREFIX)"
  elif ! valid_bucket_name "$GCS_BUCKET"; then
    problem "GCS_BUCKET='$GCS_BUCKET' is not a valid bucket name: use 3-63 lowercase letters," \
      "digits, dashes, underscores or dots, starting and ending with a letter or digit (and" \
      "not containing 'google')"
  fi

  if [[ ! $REGION =~ ^[a-z]+-[a-z]+[0-9]+$ ]]; then
    problem "REGION='$REGION' is not a region name: use one like us-central1 or europe-west1"
  fi

  if ! valid_function_name "$FUNCTION_NAME"; then
    problem "FUNCTION_NAME='$FUNCTION_NAME' is not usable: 3-49 lowercase letters, digits and" \
      "dashes, starting with a letter and not ending with a dash"
  fi

  if [[ -n $SECOPS_SERVICE_ACCOUNT &&
    ! $SECOPS_SERVICE_ACCOUNT =~ ^[a-z0-9._-]+@[a-z0-9.-]+\.[a-z]+$ ]]; then
    problem "SECOPS_SERVICE_ACCOUNT='$SECOPS_SERVICE_ACCOUNT' is not a service account email:" \
      "copy it from SecOps (SIEM Settings > Feeds > Add New Feed > Get Service Account)"
  fi

  # Destroying needs only what identifies the resources.
  if ((DESTROY)); then
    return 0
  fi

  if [[ -z $HARNESS_ACCOUNT_ID ]]; then
    problem "HARNESS_ACCOUNT_ID is not set: export HARNESS_ACCOUNT_ID=<your Harness account" \
      "identifier> (Account Settings > Overview; or --account-id=...)"
  fi

  if ! valid_cron "$SCHEDULE"; then
    problem "SCHEDULE='$SCHEDULE' is not a cron expression: give 5 fields, minute hour" \
      "day-of-month month day-of-week, e.g. '0 * * * *' (hourly) or '*/15 * * * *' (UTC)"
  fi

  if [[ $RETRY_ON_FAILURE != true && $RETRY_ON_FAILURE != false ]]; then
    problem "RETRY_ON_FAILURE='$RETRY_ON_FAILURE' must be true or false (default false)"
  fi

  for name in "${FUNCTION_CONFIG_VARS[@]}"; do
    value=${!name-}
    if [[ $value == *$'\n'* ]]; then
      problem "$name contains a line break: give it on one line"
    fi
  done
  for name in "${NUMERIC_CONFIG_VARS[@]}"; do
    value=${!name-}
    if [[ -n $value && ! $value =~ ^[0-9]+$ ]]; then
      problem "$name='$value' is not a whole number: set a number of the unit it counts, or" \
        "unset it for the function's default"
    fi
  done
  if [[ ${MAX_REQUESTS_PER_MINUTE-} =~ ^[0-9]+$ ]] && ((10#$MAX_REQUESTS_PER_MINUTE > 1000)); then
    problem "MAX_REQUESTS_PER_MINUTE=$MAX_REQUESTS_PER_MINUTE is above 1000: set 0 to 1000" \
      "requests a minute to Harness (default 360)"
  fi
  if [[ ${ALERT_LAG_MINUTES-} =~ ^[0-9]+$ ]] && ((10#$ALERT_LAG_MINUTES < 1 ||
    10#$ALERT_LAG_MINUTES > 10080)); then
    problem "ALERT_LAG_MINUTES=$ALERT_LAG_MINUTES is out of range: set 1 to 10080 minutes (a" \
      "week; default $DEFAULT_ALERT_LAG_MINUTES)"
  fi
  if [[ -n $NOTIFICATION_CHANNEL &&
    ! $NOTIFICATION_CHANNEL =~ ^projects/([a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]+)/notificationChannels/[0-9]+$ ]]
  then
    problem "NOTIFICATION_CHANNEL='$NOTIFICATION_CHANNEL' is not a notification channel's full" \
      "name: projects/PROJECT/notificationChannels/ID (list them with: gcloud beta monitoring" \
      "channels list --project=$PROJECT_ID --format='value(name,displayName)')"
  fi
  if [[ ${MAX_RUN_SECONDS-} =~ ^[0-9]+$ ]] && ((10#$MAX_RUN_SECONDS >= FUNCTION_TIMEOUT_SECONDS)); then
    problem "MAX_RUN_SECONDS=$MAX_RUN_SECONDS is not below the function timeout of" \
      "${FUNCTION_TIMEOUT_SECONDS} s: a run would be killed before it saves its checkpoint." \
      "Set MAX_RUN_SECONDS to at most $((FUNCTION_TIMEOUT_SECONDS - 1)) (default 480)"
  fi
  if [[ -n ${OUTPUT_FORMAT-} && ! ${OUTPUT_FORMAT,,} =~ ^[[:space:]]*(api|streaming)[[:space:]]*$ ]]
  then
    problem "OUTPUT_FORMAT='$OUTPUT_FORMAT' must be api or streaming (default api)"
  fi

  if [[ ! -f $SCRIPT_DIR/main.py || ! -f $SCRIPT_DIR/requirements.txt ||
    ! -f $SCRIPT_DIR/$SOURCE_PACKAGE/__init__.py ]]; then
    problem "$SCRIPT_DIR has no main.py, requirements.txt and $SOURCE_PACKAGE/: run the" \
      "deploy.sh that sits in the collector's source tree"
  fi
}

report_problems() {
  if ((${#PROBLEMS[@]} == 0)); then
    return 0
  fi
  local item
  for item in "${PROBLEMS[@]}"; do
    printf '%s: error: %s\n' "$SCRIPT_NAME" "$item" >&2
  done
  printf '%s: nothing was changed; fix the above and run again (see --help)\n' "$SCRIPT_NAME" >&2
  exit "$EXIT_USAGE"
}

check_gcloud() {
  command -v gcloud >/dev/null 2>&1 ||
    die_usage "gcloud is not on PATH: install the Google Cloud CLI" \
      "(https://cloud.google.com/sdk/docs/install) or run this from Cloud Shell"
  local account
  account=$(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null) ||
    account=''
  [[ -n $account ]] ||
    die_usage "gcloud is not logged in: run 'gcloud auth login' (or activate a service" \
      "account), then run this again"
  gcloud projects describe "$PROJECT_ID" --format='value(projectId)' >/dev/null 2>&1 ||
    die_usage "project '$PROJECT_ID' was not found or ${account%%$'\n'*} cannot see it:" \
      "check PROJECT_ID (the id, not the display name) and your access"
  ACCOUNT=${account%%$'\n'*}
  # Alert policies have gcloud commands in the alpha track only (SDK 528). 'gcloud version'
  # lists the installed components without asking to install anything.
  [[ -n $(gcloud version --format='value(alpha)' 2>/dev/null) ]] ||
    die_usage "gcloud's alpha commands are not installed, and the alert policy needs them:" \
      "run 'gcloud components install alpha' (or install the package that provides them)," \
      "then run this again"
}

# --- running gcloud ---------------------------------------------------------------------------

# Print a command so that it can be pasted back into a shell.
quoted() {
  local out='' arg squote="'\\''"
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      out+=" $arg"
    else
      out+=" '${arg//\'/$squote}'"
    fi
  done
  printf '%s' "${out# }"
}

have_tty() { (true </dev/tty) 2>/dev/null; }

# Ask a yes/no question on the terminal; without one, refuse rather than guess.
ask() {
  local answer=''
  have_tty ||
    die_usage "$1 There is no terminal to ask on: pass --yes to go ahead without asking (or" \
      "--dry-run to see every step first)."
  printf '%s [y/N] ' "$1" >/dev/tty
  IFS= read -r answer </dev/tty || answer=''
  [[ $answer =~ ^[[:space:]]*[Yy]([Ee][Ss])?[[:space:]]*$ ]]
}

confirm_first_change() {
  if ((ASSUME_YES || CONFIRMED)); then
    return 0
  fi
  ask "Make this and the remaining changes in project $PROJECT_ID?" ||
    die "stopped at your answer, before the first change: nothing was changed"
  CONFIRMED=1
}

# Read-only gcloud: runs in --dry-run too. A failure reads as "absent" (not found, or the API
# is not enabled yet); a real problem resurfaces when the create that follows fails loudly.
query() { gcloud "$@" --project="$PROJECT_ID" 2>/dev/null; }

# Print a command that changes something: as it is in a dry run (the output is a script),
# after "+ " otherwise.
show_change() {
  CHANGES=$((CHANGES + 1))
  if ((DRY_RUN)); then
    printf '%s\n' "$1"
  else
    printf '+ %s\n' "$1"
  fi
}

# A gcloud command that changes something: printed, and run unless --dry-run; its status is
# returned. --quiet keeps gcloud from prompting (it would offer bindings this script makes).
try_change() {
  local -a command=(gcloud "$@" --project="$PROJECT_ID" --quiet)
  show_change "$(quoted "${command[@]}")"
  if ((DRY_RUN)); then
    return 0
  fi
  confirm_first_change
  "${command[@]}"
}

change_failed() {
  die "the gcloud command above failed: fix what it says, then run deploy.sh again (what" \
    "is already in place is skipped)"
}

mutate() { try_change "$@" || change_failed; }

# Like mutate, with the API key on stdin. printf is a builtin: the key is never an argument of
# any process. Shown as a command that reads the key from the terminal, hidden, so that a dry
# run's output can be run as it is.
mutate_with_key_on_stdin() {
  local -a command=(gcloud "$@" --project="$PROJECT_ID" --quiet)
  show_change "read -rsp 'Harness API key (input hidden): ' key && printf %s \"\$key\" |\
 $(quoted "${command[@]}")"
  if ((DRY_RUN)); then
    return 0
  fi
  confirm_first_change
  printf '%s' "$API_KEY" | "${command[@]}" || change_failed
}

# IAM can refuse a service account for a few seconds after it was created; retry those.
mutate_retrying() {
  local attempt delay=${DEPLOY_RETRY_DELAY_SECONDS:-10}
  for attempt in 1 2 3 4 5 6; do
    if try_change "$@"; then
      return 0
    fi
    if ((attempt < 6)); then
      warn "retrying in ${delay}s (a new service account can take a moment to reach IAM)"
      sleep "$delay"
    fi
  done
  change_failed
}

# --- bookkeeping ------------------------------------------------------------------------------

step() {
  say ""
  say "[$1] $2"
}

# record WHAT NAME STATE: one line of the closing summary.
record() { SUMMARY+=("$(printf '  %-24s %-60s %s' "$1" "$2" "$3")"); }

# The word for a change, in the mood of this run.
did() { if ((DRY_RUN)); then printf 'would %s' "$1"; else printf '%s' "$2"; fi; }

# --- deploy steps -----------------------------------------------------------------------------

# Before any change, know where the key will come from: env, what is stored, or the terminal.
resolve_api_key() {
  KEY_SOURCE=environment
  if [[ -n $API_KEY ]]; then
    return 0
  fi
  local versions
  versions=$(query secrets versions list "$SECRET_PATH" --filter=state:ENABLED --limit=1 \
    --format='value(name)') || versions=''
  if [[ -n $versions ]]; then
    KEY_SOURCE=stored
    return 0
  fi
  KEY_SOURCE=terminal
  if ((DRY_RUN)); then
    return 0
  fi
  have_tty ||
    die_usage "HARNESS_API_KEY is not set and secret $SECRET_NAME holds no key yet, and there" \
      "is no terminal to ask on: export HARNESS_API_KEY (for example: read -rs" \
      "HARNESS_API_KEY && export HARNESS_API_KEY) and run again"
  printf 'Harness API key for account %s (input hidden): ' "$HARNESS_ACCOUNT_ID" >/dev/tty
  IFS= read -rs API_KEY </dev/tty || API_KEY=''
  printf '\n' >/dev/tty
  [[ -n $API_KEY ]] || die_usage "no API key was entered: nothing was changed"
}

step_apis() {
  step 1/10 "APIs"
  local enabled api
  local -a missing=()
  enabled=$(query services list --enabled --format='value(config.name)') || enabled=''
  for api in "${REQUIRED_APIS[@]}"; do
    if ! grep -Fxq -- "$api" <<<"$enabled"; then
      missing+=("$api")
    fi
  done
  if ((${#missing[@]})); then
    mutate services enable "${missing[@]}"
    record "APIs" "${#REQUIRED_APIS[@]} needed" "$(did enable enabled) ${#missing[@]}"
  else
    say "      all ${#REQUIRED_APIS[@]} enabled"
    record "APIs" "${#REQUIRED_APIS[@]} needed" "all enabled"
  fi
}

step_bucket() {
  step 2/10 "Bucket gs://$GCS_BUCKET"
  if query storage buckets describe "gs://$GCS_BUCKET" --format='value(name)' >/dev/null; then
    say "      exists, left as it is"
    record "Bucket" "gs://$GCS_BUCKET" "exists"
    return 0
  fi
  mutate storage buckets create "gs://$GCS_BUCKET" --location="$REGION" \
    --uniform-bucket-level-access --public-access-prevention --default-storage-class=STANDARD
  record "Bucket" "gs://$GCS_BUCKET" "$(did create created)"
}

# has_binding ROLE MEMBER COMMAND_PREFIX RESOURCE [FLAGS...]: is MEMBER granted ROLE on it?
has_binding() {
  local role=$1 member=$2 prefix=$3 resource=$4 policy
  shift 4
  local -a words
  read -ra words <<<"$prefix"
  policy=$(query "${words[@]}" get-iam-policy "$resource" "$@" \
    --flatten='bindings[].members' --format='value(bindings.role,bindings.members)') ||
    return 1
  grep -Fxq -- "$role"$'\t'"$member" <<<"$policy"
}

# ensure_binding ROLE MEMBER COMMAND_PREFIX RESOURCE [FLAGS...]: grant ROLE on that one resource.
ensure_binding() {
  local role=$1 member=$2 prefix=$3 resource=$4
  shift 4
  local -a words
  read -ra words <<<"$prefix"
  if has_binding "$role" "$member" "$prefix" "$resource" "$@"; then
    say "      $role for ${member#*:} on $resource: already granted"
    record "  $role" "${member#*:}" "granted"
    return 0
  fi
  mutate_retrying "${words[@]}" add-iam-policy-binding "$resource" "$@" \
    --member="$member" --role="$role"
  record "  $role" "${member#*:}" "$(did grant granted)"
}

step_service_account() {
  step 3/10 "Runtime service account $SA_EMAIL"
  if query iam service-accounts describe "$SA_EMAIL" --format='value(email)' >/dev/null; then
    say "      exists"
    record "Service account" "$SA_EMAIL" "exists"
  else
    mutate iam service-accounts create "$SA_ID" \
      --display-name="Harness audit collector ($FUNCTION_NAME)" \
      --description="Runs Cloud Run function $FUNCTION_NAME: writes gs://$GCS_BUCKET"
    record "Service account" "$SA_EMAIL" "$(did create created)"
  fi
  # On the bucket only, never the project: the function touches no other bucket.
  ensure_binding "$RUNTIME_BUCKET_ROLE" "$SA_MEMBER" "storage buckets" "gs://$GCS_BUCKET"
}

# True when the latest version already holds API_KEY. The value is compared inside this shell
# and dropped; it is never printed. A version we cannot read counts as different.
stored_key_matches() {
  local current
  current=$(query secrets versions access "$SECRET_PATH/versions/latest") || return 1
  [[ $current == "$API_KEY" ]]
}

step_secret() {
  step 4/10 "Secret $SECRET_NAME"
  local created=0
  if query secrets describe "$SECRET_PATH" --format='value(name)' >/dev/null; then
    say "      exists"
    record "Secret" "$SECRET_NAME" "exists"
  else
    mutate secrets create "$SECRET_PATH" --replication-policy=automatic
    record "Secret" "$SECRET_NAME" "$(did create created)"
    created=1
  fi
  case $KEY_SOURCE in
    stored)
      say "      HARNESS_API_KEY not set: the stored key is kept"
      record "  key" "latest version" "kept"
      ;;
    terminal)
      if ((DRY_RUN)); then
        say "      no key stored and HARNESS_API_KEY not set: a real run asks on the terminal"
      fi
      mutate_with_key_on_stdin secrets versions add "$SECRET_PATH" --data-file=-
      record "  key" "new version" "$(did add added)"
      ;;
    environment)
      if ((!created)) && stored_key_matches; then
        say "      the latest version already holds this HARNESS_API_KEY"
        record "  key" "latest version" "unchanged"
      else
        mutate_with_key_on_stdin secrets versions add "$SECRET_PATH" --data-file=-
        record "  key" "new version" "$(did add added)"
      fi
      ;;
  esac
  # On this one secret only: the function can read no other secret in the project.
  ensure_binding "$SECRET_ROLE" "$SA_MEMBER" "secrets" "$SECRET_PATH"
}

step_topic() {
  step 5/10 "Pub/Sub topic $TOPIC_NAME"
  if query pubsub topics describe "$TOPIC_PATH" --format='value(name)' >/dev/null; then
    say "      exists"
    record "Topic" "$TOPIC_NAME" "exists"
  else
    mutate pubsub topics create "$TOPIC_PATH"
    record "Topic" "$TOPIC_NAME" "$(did create created)"
  fi
  # The function publishes to its own trigger topic to go on with a backlog: on this one topic
  # only, never the project's other topics.
  ensure_binding "$PUBLISHER_ROLE" "$SA_MEMBER" "pubsub topics" "$TOPIC_PATH"
}

write_env_file() {
  local name value squote="''"
  mkdir -p -- "$DEPLOY_DIR"
  : >"$ENV_FILE"
  for name in "${FUNCTION_CONFIG_VARS[@]}"; do
    value=${!name-}
    if [[ -n $value ]]; then
      # Single-quoted YAML: every character is literal except ' itself, written twice. Commas
      # (FILTER_MODULES=CD,CI) are why this is a file and not --set-env-vars.
      printf "%s: '%s'\n" "$name" "${value//\'/$squote}" >>"$ENV_FILE"
    fi
  done
}

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum | cut -d' ' -f1
  else
    shasum -a 256 | cut -d' ' -f1
  fi
}

# The upload: a directory holding exactly what the function runs, copied from an explicit list
# (main.py, requirements.txt and the package's .py files), so that tests, tools, .venv, .git,
# caches and local env files can never be uploaded, whatever lies next to them. gcloud uploads
# every file of a directory without .gcloudignore, .gitignore or .git (it has none of them).
stage_source() {
  local path
  SOURCE_DIR=$DEPLOY_DIR/source
  rm -rf -- "$SOURCE_DIR"
  mkdir -p -- "$SOURCE_DIR"
  for path in "${SOURCE_FILES[@]}"; do
    cp -- "$SCRIPT_DIR/$path" "$SOURCE_DIR/$path"
  done
  (cd -- "$SCRIPT_DIR" && find "$SOURCE_PACKAGE" -type f -name '*.py' ! -path '*/__pycache__/*' \
    -print) |
    while IFS= read -r path; do
      mkdir -p -- "$SOURCE_DIR/${path%/*}"
      cp -- "$SCRIPT_DIR/$path" "$SOURCE_DIR/$path"
    done
}

# What gcloud uploads (the staged directory): path and content of each file, in a stable order.
source_fingerprint() {
  (
    cd -- "$SOURCE_DIR"
    find . -type f -print |
      LC_ALL=C sort |
      while IFS= read -r path; do
        printf '%s %s\n' "$(sha256 <"$path")" "${path#./}"
      done
  )
}

step_function() {
  step 6/10 "Function $FUNCTION_NAME ($FUNCTION_RUNTIME, gen2, region $REGION)"
  ENV_FILE=$DEPLOY_DIR/function-env.yaml
  write_env_file
  stage_source
  # Retries off by default: the next scheduled run is the retry, and the checkpoint makes it
  # lossless. No --retry flag means "do not retry". --trigger-topic is the one topic argument
  # gcloud wants short (it refuses projects/P/topics/T): it is read when the command runs, in
  # the project of --project.
  local -a deploy_args=(
    functions deploy "$FUNCTION_NAME" --gen2 --region="$REGION" --runtime="$FUNCTION_RUNTIME"
    --entry-point=main --trigger-topic="$TOPIC_NAME"
    --service-account="$SA_EMAIL" --trigger-service-account="$SA_EMAIL"
    --set-secrets="HARNESS_API_KEY=${SECRET_PATH}:latest"
    --timeout="${FUNCTION_TIMEOUT_SECONDS}s" --memory="$FUNCTION_MEMORY" --max-instances=1
    --cpu="$FUNCTION_CPU" --concurrency="$FUNCTION_CONCURRENCY"
  )
  if [[ $RETRY_ON_FAILURE == true ]]; then
    deploy_args+=(--retry)
  fi
  # A fingerprint of the source's content and of this exact configuration, kept as a label: a
  # re-run redeploys only when one of them changed (or the last deploy did not end ACTIVE).
  # Where the checkout lives (--source) is not part of it; what is uploaded from there is.
  local fingerprint current state label line reason=''
  fingerprint=$({
    source_fingerprint
    printf '%s\n' "${deploy_args[@]}"
    cat -- "$ENV_FILE"
  } | sha256)
  fingerprint=${fingerprint:0:40}
  current=$(query functions describe "$FUNCTION_NAME" --gen2 --region="$REGION" \
    --format='value(state,labels.deploy_hash)') || current=''
  IFS=$'\t' read -r state label <<<"$current" || true
  if [[ -z $current ]]; then
    reason=create
  elif [[ $state != ACTIVE ]]; then
    reason="redeploy: its state is ${state:-unknown}"
  elif [[ $label != "$fingerprint" ]]; then
    reason="redeploy: the source or the configuration changed"
  fi
  if [[ -z $reason ]]; then
    say "      deployed and current (source and configuration unchanged)"
    record "Function" "$FUNCTION_NAME" "current"
  else
    say "      $reason; environment passed to the function:"
    while IFS= read -r line; do
      say "        $line"
    done <"$ENV_FILE"
    mutate "${deploy_args[@]}" --source="$SOURCE_DIR" --env-vars-file="$ENV_FILE" \
      --update-labels="deploy_hash=$fingerprint"
    if [[ $reason == create ]]; then
      record "Function" "$FUNCTION_NAME" "$(did deploy deployed)"
    else
      record "Function" "$FUNCTION_NAME" "$(did redeploy redeployed)"
    fi
  fi
  # The Pub/Sub trigger calls the function as the runtime service account: it may invoke this
  # one Cloud Run service (named like the function), nothing else.
  ensure_binding "$INVOKER_ROLE" "$SA_MEMBER" "run services" "$FUNCTION_NAME" --region="$REGION"
}

step_scheduler() {
  step 7/10 "Scheduler job $JOB_NAME ('$SCHEDULE' $TIME_ZONE, region $REGION)"
  local current schedule time_zone topic
  current=$(query scheduler jobs describe "$JOB_NAME" --location="$REGION" \
    --format='value(schedule,timeZone,pubsubTarget.topicName)') || current=''
  IFS=$'\t' read -r schedule time_zone topic <<<"$current" || true
  local -a job_args=(--location="$REGION" --schedule="$SCHEDULE" --time-zone="$TIME_ZONE"
    --topic="$TOPIC_PATH" --message-body='{}')
  if [[ -z $current ]]; then
    mutate scheduler jobs create pubsub "$JOB_NAME" "${job_args[@]}" \
      --description="Triggers $FUNCTION_NAME: publishes {} to $TOPIC_NAME"
    record "Scheduler job" "$JOB_NAME" "$(did create created)"
  elif [[ $schedule != "$SCHEDULE" || $time_zone != "$TIME_ZONE" || $topic != "$TOPIC_PATH" ]]
  then
    say "      exists with schedule '$schedule' $time_zone, topic $topic: updating"
    mutate scheduler jobs update pubsub "$JOB_NAME" "${job_args[@]}"
    record "Scheduler job" "$JOB_NAME" "$(did update updated)"
  else
    say "      exists, schedule unchanged"
    record "Scheduler job" "$JOB_NAME" "exists"
  fi
}

# --- alerting ---------------------------------------------------------------------------------

# cron_number VALUE LOW NAMES: a cron field's number, or the number of a three-letter name.
cron_number() {
  local value=$1 low=$2 names=$3 index=0 name
  if [[ $value =~ ^[0-9]+$ ]]; then
    printf '%d' "$((10#$value))"
    return 0
  fi
  for name in $names; do
    if [[ $name == "${value^^}" ]]; then
      printf '%d' "$((index + low))"
      return 0
    fi
    index=$((index + 1))
  done
}

# cron_values FIELD LOW HIGH [NAMES]: the values a valid cron field matches, ascending, one a line.
cron_values() {
  local field=$1 low=$2 high=$3 names=${4-} item base step first last value
  local -a items hit=()
  IFS=, read -ra items <<<"$field"
  for item in "${items[@]}"; do
    base=${item%%/*}
    step=1
    if [[ $item == */* ]]; then
      step=$((10#${item#*/}))
    fi
    if [[ $base == '*' ]]; then
      first=$low
      last=$high
    elif [[ $base == *-* ]]; then
      first=$(cron_number "${base%%-*}" "$low" "$names")
      last=$(cron_number "${base#*-}" "$low" "$names")
    else
      first=$(cron_number "$base" "$low" "$names")
      last=$first
      if [[ $item == */* ]]; then last=$high; fi
    fi
    for ((value = first; value <= last; value += step)); do
      hit[value]=1
    done
  done
  printf '%s\n' "${!hit[@]}"
}

# The longest time between two runs of SCHEDULE, in minutes, found over one week. A schedule
# that names days of the month or months counts as rarer than any window an alert can have.
schedule_interval_minutes() {
  local -a fields minutes hours days
  local day hour minute time first=-1 previous=-1 gap=0
  read -ra fields <<<"$SCHEDULE"
  if [[ ${fields[2]} != '*' || ${fields[3]} != '*' ]]; then
    printf '%d' "$((7 * 1440))"
    return 0
  fi
  mapfile -t minutes < <(cron_values "${fields[0]}" 0 59)
  mapfile -t hours < <(cron_values "${fields[1]}" 0 23)
  if [[ ${fields[4]} == '*' ]]; then
    days=(0 1 2 3 4 5 6)
  else
    # Sunday is 0 and 7.
    mapfile -t days < <(cron_values "${fields[4]}" 0 7 "SUN MON TUE WED THU FRI SAT" |
      sed 's/^7$/0/' | sort -n -u)
  fi
  for day in "${days[@]}"; do
    for hour in "${hours[@]}"; do
      for minute in "${minutes[@]}"; do
        time=$((day * 1440 + hour * 60 + minute))
        if ((first < 0)); then
          first=$time
        elif ((time - previous > gap)); then
          gap=$((time - previous))
        fi
        previous=$time
      done
    done
  done
  if ((first + 7 * 1440 - previous > gap)); then
    gap=$((first + 7 * 1440 - previous))
  fi
  printf '%d' "$gap"
}

# A JSON string: the values here are validated names and our own text, so escaping backslash
# and double quote is enough.
json_string() {
  local text=${1//\\/\\\\}
  printf '"%s"' "${text//\"/\\\"}"
}

# The function's run summaries: one JSON line per invocation on stdout, which Cloud Logging
# keeps as jsonPayload, under the Cloud Run service that carries the gen2 function (the same
# resource.type and service_name that 'gcloud functions logs read --gen2' filters on).
summary_filter() {
  printf 'resource.type="cloud_run_revision" AND resource.labels.service_name="%s" AND %s' \
    "$FUNCTION_NAME" "$1"
}

# metric_config NAME FINGERPRINT: the LogMetric for --config-from-file. The description ends
# with the fingerprint of the rest, which is how a later run knows it is current.
metric_config() {
  local name=$1 fingerprint=$2 description filter
  case $name in
    "$METRIC_LAG")
      description="Lag of $FUNCTION_NAME: seconds since the last fully collected moment, from each run's summary"
      filter=$(summary_filter '(jsonPayload.outcome="ok" OR jsonPayload.outcome="failed") AND jsonPayload.lag_seconds:*')
      ;;
    "$METRIC_FAILED")
      description="Runs of $FUNCTION_NAME that failed (summary outcome failed)"
      filter=$(summary_filter 'jsonPayload.outcome="failed"')
      ;;
    "$METRIC_OK")
      description="Runs of $FUNCTION_NAME that succeeded (summary outcome ok)"
      filter=$(summary_filter 'jsonPayload.outcome="ok"')
      ;;
  esac
  printf '{\n  "description": %s,\n  "filter": %s,\n' \
    "$(json_string "$description [deploy.sh ${fingerprint:-?}]")" "$(json_string "$filter")"
  if [[ $name == "$METRIC_LAG" ]]; then
    printf '  "valueExtractor": "EXTRACT(jsonPayload.lag_seconds)",\n'
    printf '  "metricDescriptor": {"metricKind": "DELTA", "valueType": "DISTRIBUTION", "unit": "s"},\n'
    printf '  "bucketOptions": {"explicitBuckets": {"bounds": [%s]}}\n' "$(lag_bounds)"
  else
    printf '  "metricDescriptor": {"metricKind": "DELTA", "valueType": "INT64", "unit": "1"}\n'
  fi
  printf '}\n'
}

# Bucket bounds of the lag distribution, in seconds. The alert's threshold is one of them, so
# that the 99th percentile Monitoring interpolates lies above it exactly when a run's lag does.
lag_bounds() {
  local minutes joined
  local -a bounds
  mapfile -t bounds < <(
    for minutes in 1 2 5 10 15 30 45 60 90 120 180 240 360 480 720 1080 1440 2160 2880 4320 \
      7200 10080 20160 "$((10#$EFFECTIVE_ALERT_LAG_MINUTES))"; do
      printf '%d\n' "$((minutes * 60))"
    done | sort -n -u
  )
  printf -v joined '%s, ' "${bounds[@]}"
  printf '%s' "${joined%, }"
}

# The alerting windows, from the schedule (Cloud Monitoring allows 23.5 hours at most).
alert_windows() {
  local interval max=1410
  interval=$(schedule_interval_minutes)
  LAG_WINDOW_MINUTES=$interval
  if ((LAG_WINDOW_MINUTES > max)); then LAG_WINDOW_MINUTES=$max; fi
  TWO_INTERVALS_MINUTES=$((2 * interval))
  ABSENCE_CONDITION=1
  FAILURES_THRESHOLD=1
  if ((TWO_INTERVALS_MINUTES > max)); then
    # Two runs are further apart than any window: no absence condition, and one failure alerts.
    TWO_INTERVALS_MINUTES=$max
    ABSENCE_CONDITION=0
    FAILURES_THRESHOLD=0
  fi
  SCHEDULE_INTERVAL_MINUTES=$interval
}

# One time series per function, whatever its revisions: after a redeploy the old revision's
# series ends, which alone must not read as "no successful run".
group_by() {
  printf '"crossSeriesReducer": "%s", "groupByFields": ["resource.label.service_name"]' "$1"
}

# policy_config FINGERPRINT: the AlertPolicy for --policy-from-file.
policy_config() {
  local fingerprint=$1 prefix=logging.googleapis.com/user/ channels=''
  if [[ -n $NOTIFICATION_CHANNEL ]]; then
    channels=$(json_string "$NOTIFICATION_CHANNEL")
  fi
  printf '{\n'
  printf '  "displayName": %s,\n' "$(json_string "Harness audit collector $FUNCTION_NAME")"
  printf '  "documentation": {"mimeType": "text/markdown", "content": %s},\n' "$(json_string \
    "The Harness audit collector $FUNCTION_NAME (project $PROJECT_ID, region $REGION) is not running, is behind, or is failing. Read its logs: gcloud functions logs read $FUNCTION_NAME --gen2 --region=$REGION --project=$PROJECT_ID --limit=50. Check its schedule: gcloud scheduler jobs describe $JOB_NAME --location=$REGION --project=$PROJECT_ID. Redeploying with deploy.sh puts back whatever is missing.")"
  printf '  "userLabels": {"%s": "%s", "deploy_hash": "%s"},\n' "$POLICY_LABEL" "$FUNCTION_NAME" \
    "$fingerprint"
  printf '  "combiner": "OR",\n  "conditions": [\n'
  if ((ABSENCE_CONDITION)); then
    printf '    {\n      "displayName": %s,\n' "$(json_string \
      "No successful run for ${TWO_INTERVALS_MINUTES} min (2 schedule intervals)")"
    printf '      "conditionAbsent": {\n        "filter": %s,\n' "$(json_string \
      "metric.type=\"$prefix$METRIC_OK\" AND resource.type=\"cloud_run_revision\"")"
    printf '        "aggregations": [{"alignmentPeriod": "300s", "perSeriesAligner": "ALIGN_SUM", %s}],\n' \
      "$(group_by REDUCE_SUM)"
    printf '        "duration": "%ds",\n        "trigger": {"count": 1}\n      }\n    },\n' \
      "$((TWO_INTERVALS_MINUTES * 60))"
  fi
  printf '    {\n      "displayName": %s,\n' "$(json_string \
    "Lag above $((10#$EFFECTIVE_ALERT_LAG_MINUTES)) min (ALERT_LAG_MINUTES)")"
  printf '      "conditionThreshold": {\n        "filter": %s,\n' "$(json_string \
    "metric.type=\"$prefix$METRIC_LAG\" AND resource.type=\"cloud_run_revision\"")"
  printf '        "aggregations": [{"alignmentPeriod": "%ds", "perSeriesAligner": "ALIGN_PERCENTILE_99", %s}],\n' \
    "$((LAG_WINDOW_MINUTES * 60))" "$(group_by REDUCE_MAX)"
  printf '        "comparison": "COMPARISON_GT",\n        "thresholdValue": %d,\n' \
    "$((10#$EFFECTIVE_ALERT_LAG_MINUTES * 60))"
  printf '        "duration": "0s",\n        "trigger": {"count": 1}\n      }\n    },\n'
  printf '    {\n      "displayName": %s,\n' "$(json_string \
    "$((FAILURES_THRESHOLD + 1)) or more failed runs within ${TWO_INTERVALS_MINUTES} min")"
  printf '      "conditionThreshold": {\n        "filter": %s,\n' "$(json_string \
    "metric.type=\"$prefix$METRIC_FAILED\" AND resource.type=\"cloud_run_revision\"")"
  printf '        "aggregations": [{"alignmentPeriod": "%ds", "perSeriesAligner": "ALIGN_SUM", %s}],\n' \
    "$((TWO_INTERVALS_MINUTES * 60))" "$(group_by REDUCE_SUM)"
  printf '        "comparison": "COMPARISON_GT",\n        "thresholdValue": %d,\n' \
    "$FAILURES_THRESHOLD"
  printf '        "duration": "0s",\n        "trigger": {"count": 1}\n      }\n    }\n  ],\n'
  printf '  "notificationChannels": [%s],\n  "enabled": true\n}\n' "$channels"
}

# write_fingerprinted FILE GENERATOR [ARGS...]: write what GENERATOR prints when given the
# fingerprint of what it prints without one; print that fingerprint.
write_fingerprinted() {
  local file=$1 fingerprint
  shift
  fingerprint=$("$@" '' | sha256)
  fingerprint=${fingerprint:0:40}
  "$@" "$fingerprint" >"$file"
  printf '%s' "$fingerprint"
}

ensure_metric() {
  local name=$1 file=$DEPLOY_DIR/metric-$1.json fingerprint description
  fingerprint=$(write_fingerprinted "$file" metric_config "$name")
  if description=$(query logging metrics describe "$name" --format='value(description)'); then
    if [[ $description == *"[deploy.sh $fingerprint]" ]]; then
      say "      metric $name: exists, current"
      record "Log-based metric" "$name" "current"
    else
      mutate logging metrics update "$name" --config-from-file="$file"
      record "Log-based metric" "$name" "$(did update updated)"
    fi
  else
    mutate logging metrics create "$name" --config-from-file="$file"
    record "Log-based metric" "$name" "$(did create created)"
  fi
}

# The alert policy deploy.sh made for this function: "NAME<tab>deploy_hash", or nothing.
find_policy() {
  query alpha monitoring policies list --filter="userLabels.$POLICY_LABEL=$FUNCTION_NAME" \
    --format='value(name,userLabels.deploy_hash)' | sed -n 1p
}

step_alerting() {
  step 8/10 "Alerting: log-based metrics and an alert policy"
  local metric file=$DEPLOY_DIR/alert-policy.json fingerprint current name label
  for metric in "$METRIC_OK" "$METRIC_FAILED" "$METRIC_LAG"; do
    ensure_metric "$metric"
  done
  alert_windows
  fingerprint=$(write_fingerprinted "$file" policy_config)
  current=$(find_policy) || current=''
  IFS=$'\t' read -r name label <<<"$current" || true
  if [[ -z $name ]]; then
    mutate alpha monitoring policies create --policy-from-file="$file"
    record "Alert policy" "Harness audit collector $FUNCTION_NAME" "$(did create created)"
  elif [[ $label != "$fingerprint" ]]; then
    say "      policy $name differs from $file: updating"
    mutate alpha monitoring policies update "$name" --policy-from-file="$file"
    record "Alert policy" "$name" "$(did update updated)"
  else
    say "      policy $name: exists, current"
    record "Alert policy" "$name" "current"
  fi
  if ((ABSENCE_CONDITION)); then
    say "      alerts when no run succeeds for ${TWO_INTERVALS_MINUTES} min (twice the schedule's"
    say "      longest interval, ${SCHEDULE_INTERVAL_MINUTES} min), when the lag exceeds" \
      "$((10#$EFFECTIVE_ALERT_LAG_MINUTES)) min,"
    say "      or on 2 failed runs within ${TWO_INTERVALS_MINUTES} min (about two runs in a row)"
  else
    say "      the schedule runs less often than every 705 min, and Cloud Monitoring waits 23.5 h"
    say "      at most: alerts on a failed run, or when the lag exceeds" \
      "$((10#$EFFECTIVE_ALERT_LAG_MINUTES)) min; a schedule that"
    say "      stops is not noticed"
  fi
  if [[ -n $NOTIFICATION_CHANNEL ]]; then
    say "      notifies $NOTIFICATION_CHANNEL"
    record "  notification channel" "$NOTIFICATION_CHANNEL" "attached"
  else
    record "  notification channel" "(NOTIFICATION_CHANNEL not set)" "none"
  fi
}

print_feed_settings() {
  say "      Feed settings for Google SecOps (SIEM Settings > Feeds > Add New Feed):"
  say "        Source type:             Google Cloud Storage V2"
  say "        Log type:                Harness IO"
  say "        Storage bucket URL:      $FEED_URI"
  say "        Source deletion option:  Never (the access granted here is read-only)"
  if state_key_inside_prefix; then
    say "      WARNING: the checkpoint gs://$GCS_BUCKET/$EFFECTIVE_STATE_KEY lies UNDER that URL:"
    say "      the feed would ingest it and 'Delete transferred files' would delete it. Move"
    say "      STATE_KEY outside GCS_PREFIX (default $DEFAULT_STATE_KEY) and run again."
  else
    say "      The checkpoint gs://$GCS_BUCKET/$EFFECTIVE_STATE_KEY lies outside that URL: the"
    say "      feed never reads it, and 'Delete transferred files' could never delete it (that"
    say "      option also needs delete permission, which this script does not grant)."
  fi
}

step_secops() {
  step 9/10 "Google SecOps feed access"
  if [[ -n ${SECOPS_INSTANCE-} ]]; then
    feed_account_and_plan ensure # sets SECOPS_SERVICE_ACCOUNT
  elif [[ -z $SECOPS_SERVICE_ACCOUNT ]]; then
    say "      SECOPS_SERVICE_ACCOUNT not set: no access granted. In SecOps, Add New Feed >"
    say "      Get Service Account, then run again with SECOPS_SERVICE_ACCOUNT=<that email>."
    record "SecOps feed access" "(SECOPS_SERVICE_ACCOUNT not set)" "skipped"
  fi
  if [[ -n $SECOPS_SERVICE_ACCOUNT ]]; then
    local role
    for role in "${SECOPS_BUCKET_ROLES[@]}"; do
      ensure_binding "$role" "serviceAccount:$SECOPS_SERVICE_ACCOUNT" "storage buckets" \
        "gs://$GCS_BUCKET"
    done
  fi
  if [[ -z ${SECOPS_INSTANCE-} ]]; then
    print_feed_settings
  elif grep -q '^would' <<<"$FEED_PLAN"; then
    feed_change ensure
    record "SecOps feed" "$FUNCTION_NAME" "$(did 'create or update' 'created or updated')"
  else
    record "SecOps feed" "$FUNCTION_NAME" "current"
  fi
}

# python -m harness_audit from the repository's .venv, with the function's settings; a key
# reaches it through its environment, never an argument.
operator_cli() {
  local python=${HARNESS_AUDIT_PYTHON:-$SCRIPT_DIR/.venv/bin/python}
  [[ -x $python ]] || die_usage "$python not found: run 'make .venv/.installed' first"
  (cd -- "$SCRIPT_DIR" && GCS_BUCKET=$GCS_BUCKET PROJECT_ID=$PROJECT_ID \
    FUNCTION_NAME=$FUNCTION_NAME "$python" -m harness_audit "$@")
}

# Before the first change, one listing request with the key (the stored one on a redeploy):
# an expired token or a missing core_audit_view stops the deploy now, not an hour later.
preflight_harness() {
  local key=$API_KEY answer
  if ((SKIP_HARNESS_CHECK)); then
    say "Harness check skipped (--skip-harness-check)." && return 0
  fi
  [[ -n $key ]] || key=$(query secrets versions access "$SECRET_PATH/versions/latest") || key=''
  if [[ -z $key ]]; then
    say "Harness check skipped: HARNESS_API_KEY is not set and no stored key could be read" \
      "(none yet, or no access to secret $SECRET_NAME)." && return 0
  fi
  answer=$(HARNESS_API_KEY=$key operator_cli preflight) ||
    die "the Harness check failed (above): nothing was changed. Fix it, or deploy with" \
      "--skip-harness-check where Harness cannot be reached from this machine"
  say "$answer"
}

# Read-only: the feed's account (to grant or ungrant) and what `feed ensure|destroy` would do.
feed_account_and_plan() {
  local line
  FEED_PLAN=$(operator_cli feed "$1" --dry-run) || die "the SecOps feed could not be read (above)"
  SECOPS_SERVICE_ACCOUNT=$(sed -n 's/^service account //p' <<<"$FEED_PLAN")
  ((!DRY_RUN)) || while read -r line; do say "      $line"; done < <(grep '^would ' <<<"$FEED_PLAN")
}

feed_change() {
  show_change "$(quoted .venv/bin/python -m harness_audit feed "$1")"
  if ((!DRY_RUN)); then
    confirm_first_change
    operator_cli feed "$1" | sed 's/^/      /' || change_failed
  fi
}

print_summary() {
  step 10/10 "Summary: project $PROJECT_ID, region $REGION"
  local line
  for line in "${SUMMARY[@]}"; do
    say "$line"
  done
  say ""
  if ((DRY_RUN)); then
    say "Dry run: $CHANGES command(s) above would change something; nothing was changed."
    say "Run again without --dry-run to apply them."
    return 0
  fi
  if ((CHANGES == 0)); then
    say "Nothing changed: everything was already in place."
  else
    say "Done: $CHANGES change(s) made."
  fi
  say ""
  say "Force a run now (the same as 'Force run' in the console):"
  say "  gcloud scheduler jobs run $JOB_NAME --location=$REGION --project=$PROJECT_ID"
  say "Read the function's logs:"
  say "  gcloud functions logs read $FUNCTION_NAME --gen2 --region=$REGION" \
    "--project=$PROJECT_ID --limit=50"
  say "  https://console.cloud.google.com/run/detail/$REGION/$FUNCTION_NAME/logs?project=$PROJECT_ID"
  say "See what landed:"
  say "  gcloud storage ls --recursive $FEED_URI --project=$PROJECT_ID | tail"
  if [[ -z $NOTIFICATION_CHANNEL ]]; then
    say "The alert policy notifies no one yet. List the project's notification channels (or"
    say "create one in the console: Monitoring > Alerting > Edit notification channels):"
    say "  gcloud beta monitoring channels list --project=$PROJECT_ID" \
      "--format='value(name,displayName)'"
    say "then run deploy.sh again with NOTIFICATION_CHANNEL=projects/$PROJECT_ID/notificationChannels/ID."
  fi
}

deploy() {
  resolve_api_key
  preflight_harness
  step_apis
  step_bucket
  step_service_account
  step_secret
  step_topic
  step_function
  step_scheduler
  step_alerting
  step_secops
  print_summary
}

# --- destroy ----------------------------------------------------------------------------------

destroy() {
  local has_job=0 has_function=0 has_topic=0 has_secret=0 has_sa=0 policy pair role member item
  local alert_policy='' metric
  local -a metrics=()
  local -a plan=() bindings=() candidates=("$RUNTIME_BUCKET_ROLE $SA_MEMBER")
  if [[ -n ${SECOPS_INSTANCE-} ]]; then
    feed_account_and_plan destroy >/dev/null
    grep -q '^would delete' <<<"$FEED_PLAN" && plan+=("SecOps feed named $FUNCTION_NAME")
  fi
  if [[ -n $SECOPS_SERVICE_ACCOUNT ]]; then
    for role in "${SECOPS_BUCKET_ROLES[@]}"; do
      candidates+=("$role serviceAccount:$SECOPS_SERVICE_ACCOUNT")
    done
  fi

  if query scheduler jobs describe "$JOB_NAME" --location="$REGION" --format='value(name)' \
    >/dev/null; then
    has_job=1
    plan+=("scheduler job $JOB_NAME")
  fi
  if query functions describe "$FUNCTION_NAME" --gen2 --region="$REGION" \
    --format='value(name)' >/dev/null; then
    has_function=1
    plan+=("function $FUNCTION_NAME (with its Cloud Run service and Eventarc trigger)")
  fi
  alert_policy=$(find_policy | cut -f1) || alert_policy=''
  if [[ -n $alert_policy ]]; then
    plan+=("alert policy $alert_policy")
  fi
  for metric in "$METRIC_OK" "$METRIC_FAILED" "$METRIC_LAG"; do
    if query logging metrics describe "$metric" --format='value(name)' >/dev/null; then
      metrics+=("$metric")
      plan+=("log-based metric $metric")
    fi
  done
  if query pubsub topics describe "$TOPIC_PATH" --format='value(name)' >/dev/null; then
    has_topic=1
    plan+=("topic $TOPIC_NAME (with its role bindings)")
  fi
  if query secrets describe "$SECRET_PATH" --format='value(name)' >/dev/null; then
    has_secret=1
    plan+=("secret $SECRET_NAME and every version of the key")
  fi
  policy=$(query storage buckets get-iam-policy "gs://$GCS_BUCKET" \
    --flatten='bindings[].members' --format='value(bindings.role,bindings.members)') ||
    policy=''
  for pair in "${candidates[@]}"; do
    if grep -Fxq -- "${pair% *}"$'\t'"${pair#* }" <<<"$policy"; then
      bindings+=("$pair")
      plan+=("${pair% *} for ${pair#*:} on gs://$GCS_BUCKET")
    fi
  done
  if query iam service-accounts describe "$SA_EMAIL" --format='value(email)' >/dev/null; then
    has_sa=1
    plan+=("service account $SA_EMAIL")
  fi

  say ""
  say "Kept: gs://$GCS_BUCKET and every object in it (logs and checkpoint), and the enabled APIs."
  say "(The local copies deploy.sh made, in ${DEPLOY_DIR#"$SCRIPT_DIR"/}, stay too: delete at will.)"
  if [[ -z $SECOPS_SERVICE_ACCOUNT ]]; then
    say "(SECOPS_SERVICE_ACCOUNT not set: any access granted to the feed stays.)"
  fi
  if ((${#plan[@]} == 0)); then
    say "Nothing to remove: none of what deploy.sh creates exists in project $PROJECT_ID."
    return 0
  fi
  say "To remove from project $PROJECT_ID:"
  for item in "${plan[@]}"; do
    say "  - $item"
  done
  if ((!DRY_RUN && !ASSUME_YES)); then
    ask "Remove these ${#plan[@]} item(s) from project $PROJECT_ID?" ||
      die "stopped at your answer: nothing was removed"
  fi
  CONFIRMED=1
  say ""

  # Stop the trigger first, then what it calls; role bindings before the account they name, so
  # no "deleted:serviceAccount:..." entries are left behind on the bucket.
  if ((has_job)); then
    mutate scheduler jobs delete "$JOB_NAME" --location="$REGION"
  fi
  if ((has_function)); then
    mutate functions delete "$FUNCTION_NAME" --gen2 --region="$REGION"
  fi
  # The policy before the metrics it watches.
  if [[ -n $alert_policy ]]; then
    mutate alpha monitoring policies delete "$alert_policy"
  fi
  for metric in "${metrics[@]}"; do
    mutate logging metrics delete "$metric"
  done
  if ((has_topic)); then
    mutate pubsub topics delete "$TOPIC_PATH"
  fi
  if ((has_secret)); then
    mutate secrets delete "$SECRET_PATH"
  fi
  if grep -q '^would delete' <<<"${FEED_PLAN-}"; then feed_change destroy; fi
  for pair in "${bindings[@]}"; do
    role=${pair% *}
    member=${pair#* }
    mutate storage buckets remove-iam-policy-binding "gs://$GCS_BUCKET" --member="$member" \
      --role="$role"
  done
  if ((has_sa)); then
    mutate iam service-accounts delete "$SA_EMAIL"
  fi
  say ""
  if ((DRY_RUN)); then
    say "Dry run: $CHANGES command(s) above would remove something; nothing was changed."
  else
    say "Removed ${#plan[@]} item(s). gs://$GCS_BUCKET and its objects are untouched."
  fi
}

# --- main -------------------------------------------------------------------------------------

main() {
  parse_args "$@"
  apply_defaults
  validate_config
  report_problems
  if ((!DESTROY)) && state_key_inside_prefix; then
    warn "STATE_KEY=$EFFECTIVE_STATE_KEY lies under GCS_PREFIX=$EFFECTIVE_PREFIX: the SecOps" \
      "feed would ingest the checkpoint. Move STATE_KEY outside the prefix" \
      "(default $DEFAULT_STATE_KEY)"
  fi
  check_gcloud

  local mode=deploy
  if ((DESTROY)); then mode=destroy; fi
  if ((DRY_RUN)); then mode+=" (dry run: read-only commands only, changes are printed)"; fi
  say "Harness audit collector: $mode"
  say "  project   $PROJECT_ID (as $ACCOUNT)"
  say "  region    $REGION"
  say "  bucket    gs://$GCS_BUCKET"
  say "  function  $FUNCTION_NAME; topic $TOPIC_NAME; job $JOB_NAME"
  say "  runtime   $SA_EMAIL"
  say "  secret    $SECRET_NAME"

  if ((DESTROY)); then
    destroy
  else
    deploy
  fi
}

main "$@"
