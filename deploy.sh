#!/usr/bin/env bash
# deploy.sh: one command from an empty Google Cloud project to the Harness audit collector
# running on a schedule, and (with --destroy) back again.
#
# Every step looks before it touches: describe, then create only what is missing, so a second
# run with the same inputs changes nothing. --dry-run runs only the read-only describe/list
# commands and prints every command that would change something. The Harness API key travels
# on stdin to Secret Manager and nowhere else: not in a command line, not in output, not in the
# environment of any child process.
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
)

# The function's configuration, passed through to it when set and not empty. HARNESS_API_KEY
# is deliberately absent: the function gets it from Secret Manager via --set-secrets.
readonly FUNCTION_CONFIG_VARS=(
  HARNESS_ACCOUNT_ID GCS_BUCKET HARNESS_API_BASE GCS_PREFIX STATE_KEY PAGE_SIZE
  START_MINUTES_BACK FILTER_MODULES FILTER_ACTIONS STATIC_FILTER MAX_RETRIES MAX_RUN_SECONDS
  OVERLAP_SECONDS MAX_OBJECT_MB OUTPUT_FORMAT
)
readonly NUMERIC_CONFIG_VARS=(PAGE_SIZE START_MINUTES_BACK MAX_RETRIES MAX_RUN_SECONDS
  OVERLAP_SECONDS)

# The runtime service account creates data parts and lists and reads them back (to skip events
# already written), and reads and overwrites the checkpoint (which also holds the run's lease)
# under a generation precondition; overwriting an object needs storage.objects.delete.
# objectCreator can only create; objectAdmin adds object ACL and IAM administration it has no
# use for. objectUser is exactly get, list, create, update and delete of objects, with no bucket
# or IAM administration, and it is granted on the bucket only.
readonly RUNTIME_BUCKET_ROLE=roles/storage.objectUser
readonly SECRET_ROLE=roles/secretmanager.secretAccessor
readonly INVOKER_ROLE=roles/run.invoker
# The SecOps feed lists and reads objects (objectViewer) and reads bucket metadata
# (legacyBucketReader gives storage.buckets.get, which the transfer checks first).
readonly SECOPS_BUCKET_ROLES=(roles/storage.objectViewer roles/storage.legacyBucketReader)

DRY_RUN=0
ASSUME_YES=0
DESTROY=0
CONFIRMED=0
CHANGES=0
SUMMARY=()
WORK_DIR=''

usage() {
  cat <<'EOF'
Usage: ./deploy.sh [--dry-run] [--yes] [--destroy] [--OPTION=VALUE ...]

Deploys the Harness audit collector: APIs, bucket, runtime service account, the API key in
Secret Manager, Pub/Sub topic, Cloud Run function (gen2), Cloud Scheduler job, and read access
for the Google SecOps feed. Idempotent: a second run with the same inputs changes nothing.

  --dry-run   run only read-only gcloud commands; print every command that would change something
  --yes, -y   do not ask before the first change (needed when there is no terminal)
  --destroy   remove what deploy.sh created (job, function, topic, secret, service account,
              bucket role bindings); never the bucket or its objects
  --help, -h  this text

Environment variables (or the option in brackets):
  PROJECT_ID              required  [--project]
  GCS_BUCKET              required  [--bucket]  created in REGION unless it exists
  HARNESS_ACCOUNT_ID      required  [--account-id] (not needed for --destroy)
  REGION                  default us-central1  [--region]
  HARNESS_API_KEY         stored as a new secret version when set and different; when unset the
                          stored key is kept, or asked for on the terminal (input hidden) if there
                          is none. There is no option for it: a key on a command line leaks.
  SECOPS_SERVICE_ACCOUNT  optional: the feed's service account (SecOps "Get Service Account")
                          [--secops-service-account]
  SCHEDULE                default "0 * * * *", 5-field cron, UTC  [--schedule]
  FUNCTION_NAME           default harness-audit-collector  [--function-name]
  RETRY_ON_FAILURE        default false; true deploys the function with --retry
  Passed through to the function when set: HARNESS_API_BASE GCS_PREFIX STATE_KEY PAGE_SIZE
  START_MINUTES_BACK FILTER_MODULES FILTER_ACTIONS STATIC_FILTER MAX_RETRIES MAX_RUN_SECONDS
  (below 540) OVERLAP_SECONDS MAX_OBJECT_MB OUTPUT_FORMAT.

Exit status: 0 done, 1 a step failed or you declined, 2 fix the input or the environment.
EOF
}

say() { printf '%s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit "$EXIT_FAILED"; }
die_usage() { printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit "$EXIT_USAGE"; }

cleanup() { if [[ -n $WORK_DIR ]]; then rm -rf -- "$WORK_DIR"; fi; }
trap cleanup EXIT

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

  # Names derived from the function's, so that two collectors can live in one project.
  TOPIC_NAME=${FUNCTION_NAME}-trigger
  JOB_NAME=${FUNCTION_NAME}-schedule
  SECRET_NAME=${FUNCTION_NAME}-api-key
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
  if [[ ${MAX_RUN_SECONDS-} =~ ^[0-9]+$ ]] && ((10#$MAX_RUN_SECONDS >= FUNCTION_TIMEOUT_SECONDS)); then
    problem "MAX_RUN_SECONDS=$MAX_RUN_SECONDS is not below the function timeout of" \
      "${FUNCTION_TIMEOUT_SECONDS} s: a run would be killed before it saves its checkpoint." \
      "Set MAX_RUN_SECONDS to at most $((FUNCTION_TIMEOUT_SECONDS - 1)) (default 480)"
  fi
  if [[ -n ${OUTPUT_FORMAT-} && ! ${OUTPUT_FORMAT,,} =~ ^[[:space:]]*(api|streaming)[[:space:]]*$ ]]
  then
    problem "OUTPUT_FORMAT='$OUTPUT_FORMAT' must be api or streaming (default api)"
  fi

  if [[ ! -f $SCRIPT_DIR/main.py || ! -f $SCRIPT_DIR/requirements.txt ]]; then
    problem "$SCRIPT_DIR has no main.py and requirements.txt: run the deploy.sh that sits in" \
      "the collector's source tree"
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

# A gcloud command that changes something: printed, and run unless --dry-run; its status is
# returned. --quiet keeps gcloud from prompting (it would offer bindings this script makes).
try_change() {
  local -a command=(gcloud "$@" --project="$PROJECT_ID" --quiet)
  CHANGES=$((CHANGES + 1))
  printf '+ %s\n' "$(quoted "${command[@]}")"
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
# any process.
mutate_with_key_on_stdin() {
  local -a command=(gcloud "$@" --project="$PROJECT_ID" --quiet)
  CHANGES=$((CHANGES + 1))
  printf '+ %s  < the Harness API key on stdin (not shown)\n' "$(quoted "${command[@]}")"
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

step() { printf '\n[%s] %s\n' "$1" "$2"; }

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
  versions=$(query secrets versions list "$SECRET_NAME" --filter=state:ENABLED --limit=1 \
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
  step 1/9 "APIs"
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
  step 2/9 "Bucket gs://$GCS_BUCKET"
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
  step 3/9 "Runtime service account $SA_EMAIL"
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
  current=$(query secrets versions access latest --secret="$SECRET_NAME") || return 1
  [[ $current == "$API_KEY" ]]
}

step_secret() {
  step 4/9 "Secret $SECRET_NAME"
  local created=0
  if query secrets describe "$SECRET_NAME" --format='value(name)' >/dev/null; then
    say "      exists"
    record "Secret" "$SECRET_NAME" "exists"
  else
    mutate secrets create "$SECRET_NAME" --replication-policy=automatic
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
      mutate_with_key_on_stdin secrets versions add "$SECRET_NAME" --data-file=-
      record "  key" "new version" "$(did add added)"
      ;;
    environment)
      if ((!created)) && stored_key_matches; then
        say "      the latest version already holds this HARNESS_API_KEY"
        record "  key" "latest version" "unchanged"
      else
        mutate_with_key_on_stdin secrets versions add "$SECRET_NAME" --data-file=-
        record "  key" "new version" "$(did add added)"
      fi
      ;;
  esac
  # On this one secret only: the function can read no other secret in the project.
  ensure_binding "$SECRET_ROLE" "$SA_MEMBER" "secrets" "$SECRET_NAME"
}

step_topic() {
  step 5/9 "Pub/Sub topic $TOPIC_NAME"
  if query pubsub topics describe "$TOPIC_NAME" --format='value(name)' >/dev/null; then
    say "      exists"
    record "Topic" "$TOPIC_NAME" "exists"
    return 0
  fi
  mutate pubsub topics create "$TOPIC_NAME"
  record "Topic" "$TOPIC_NAME" "$(did create created)"
}

write_env_file() {
  local name value squote="''"
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

# What gcloud uploads (see .gcloudignore): path and content of each file, in a stable order.
source_fingerprint() {
  local path
  local -a paths=()
  for path in main.py requirements.txt .gcloudignore harness_audit; do
    if [[ -e $SCRIPT_DIR/$path ]]; then
      paths+=("$path")
    fi
  done
  (
    cd -- "$SCRIPT_DIR"
    find "${paths[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print |
      LC_ALL=C sort |
      while IFS= read -r path; do
        printf '%s %s\n' "$(sha256 <"$path")" "$path"
      done
  )
}

step_function() {
  step 6/9 "Function $FUNCTION_NAME ($FUNCTION_RUNTIME, gen2, region $REGION)"
  ENV_FILE=$WORK_DIR/function-env.yaml
  write_env_file
  # Retries off by default: the next scheduled run is the retry, and the checkpoint makes it
  # lossless. No --retry flag means "do not retry".
  local -a deploy_args=(
    functions deploy "$FUNCTION_NAME" --gen2 --region="$REGION" --runtime="$FUNCTION_RUNTIME"
    --entry-point=main --trigger-topic="$TOPIC_NAME"
    --service-account="$SA_EMAIL" --trigger-service-account="$SA_EMAIL"
    --set-secrets="HARNESS_API_KEY=${SECRET_NAME}:latest"
    --timeout="${FUNCTION_TIMEOUT_SECONDS}s" --memory="$FUNCTION_MEMORY" --max-instances=1
  )
  if [[ $RETRY_ON_FAILURE == true ]]; then
    deploy_args+=(--retry)
  fi
  # A fingerprint of the source's content and of this exact configuration, kept as a label: a
  # re-run redeploys only when one of them changed (or the last deploy did not end ACTIVE).
  # Where the checkout lives (--source) is not part of it.
  local fingerprint current state label reason=''
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
    sed 's/^/        /' "$ENV_FILE"
    mutate "${deploy_args[@]}" --source="$SCRIPT_DIR" --env-vars-file="$ENV_FILE" \
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
  step 7/9 "Scheduler job $JOB_NAME ('$SCHEDULE' $TIME_ZONE, region $REGION)"
  local current schedule time_zone topic topic_path
  topic_path=projects/$PROJECT_ID/topics/$TOPIC_NAME
  current=$(query scheduler jobs describe "$JOB_NAME" --location="$REGION" \
    --format='value(schedule,timeZone,pubsubTarget.topicName)') || current=''
  IFS=$'\t' read -r schedule time_zone topic <<<"$current" || true
  local -a job_args=(--location="$REGION" --schedule="$SCHEDULE" --time-zone="$TIME_ZONE"
    --topic="$TOPIC_NAME" --message-body='{}')
  if [[ -z $current ]]; then
    mutate scheduler jobs create pubsub "$JOB_NAME" "${job_args[@]}" \
      --description="Triggers $FUNCTION_NAME: publishes {} to $TOPIC_NAME"
    record "Scheduler job" "$JOB_NAME" "$(did create created)"
  elif [[ $schedule != "$SCHEDULE" || $time_zone != "$TIME_ZONE" || $topic != "$topic_path" ]]
  then
    say "      exists with schedule '$schedule' $time_zone, topic $topic: updating"
    mutate scheduler jobs update pubsub "$JOB_NAME" "${job_args[@]}"
    record "Scheduler job" "$JOB_NAME" "$(did update updated)"
  else
    say "      exists, schedule unchanged"
    record "Scheduler job" "$JOB_NAME" "exists"
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
  step 8/9 "Google SecOps feed access"
  if [[ -z $SECOPS_SERVICE_ACCOUNT ]]; then
    say "      SECOPS_SERVICE_ACCOUNT not set: no access granted. In SecOps, Add New Feed >"
    say "      Get Service Account, then run again with SECOPS_SERVICE_ACCOUNT=<that email>."
    record "SecOps feed access" "(SECOPS_SERVICE_ACCOUNT not set)" "skipped"
  else
    local role
    for role in "${SECOPS_BUCKET_ROLES[@]}"; do
      ensure_binding "$role" "serviceAccount:$SECOPS_SERVICE_ACCOUNT" "storage buckets" \
        "gs://$GCS_BUCKET"
    done
  fi
  print_feed_settings
}

print_summary() {
  step 9/9 "Summary: project $PROJECT_ID, region $REGION"
  printf '%s\n' "${SUMMARY[@]}"
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
}

deploy() {
  resolve_api_key
  step_apis
  step_bucket
  step_service_account
  step_secret
  step_topic
  step_function
  step_scheduler
  step_secops
  print_summary
}

# --- destroy ----------------------------------------------------------------------------------

destroy() {
  local has_job=0 has_function=0 has_topic=0 has_secret=0 has_sa=0 policy pair role member
  local -a plan=() bindings=() candidates=("$RUNTIME_BUCKET_ROLE $SA_MEMBER")
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
  if query pubsub topics describe "$TOPIC_NAME" --format='value(name)' >/dev/null; then
    has_topic=1
    plan+=("topic $TOPIC_NAME")
  fi
  if query secrets describe "$SECRET_NAME" --format='value(name)' >/dev/null; then
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
  if [[ -z $SECOPS_SERVICE_ACCOUNT ]]; then
    say "(SECOPS_SERVICE_ACCOUNT not set: any access granted to the feed stays.)"
  fi
  if ((${#plan[@]} == 0)); then
    say "Nothing to remove: none of what deploy.sh creates exists in project $PROJECT_ID."
    return 0
  fi
  say "To remove from project $PROJECT_ID:"
  printf '  - %s\n' "${plan[@]}"
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
  if ((has_topic)); then
    mutate pubsub topics delete "$TOPIC_NAME"
  fi
  if ((has_secret)); then
    mutate secrets delete "$SECRET_NAME"
  fi
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
    WORK_DIR=$(mktemp -d)
    deploy
  fi
}

main "$@"
