#!/usr/bin/env bash
# deploy.sh: one command from an empty Google Cloud project to the Harness audit collector
# running on a schedule, and (with --destroy) back again. Every step looks before it touches,
# so a second run with the same inputs changes nothing. The Harness API key travels on stdin
# (to Secret Manager, and to the settings check) and nowhere else. ./deploy.sh --help for the
# options; the README's "Deploy" section explains each step.

# shellcheck disable=SC2034  # the templates' variables are read through ${!name}

# `sh deploy.sh` runs this under a POSIX shell: go on under bash.
if [ -z "${BASH_VERSION-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail

if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
  printf 'deploy.sh: error: needs bash 4.4 or newer, this is %s (on macOS: brew install bash)\n' \
    "$BASH_VERSION" >&2
  exit 2
fi

# Out of the environment first thing: no child process can see (or log) the key through it.
API_KEY=${HARNESS_API_KEY-}
declare +x API_KEY
unset HARNESS_API_KEY

SCRIPT_NAME=${0##*/}
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
readonly SCRIPT_NAME SCRIPT_DIR

# Exit codes: 0 done (or nothing to do); 1 a step failed or you declined; 2 fix the input or
# the environment.
readonly EXIT_FAILED=1 EXIT_USAGE=2

# Event-driven functions run 540 s at most (config.py keeps MAX_RUN_SECONDS below it).
readonly FUNCTION_TIMEOUT_SECONDS=540
readonly FUNCTION_RUNTIME=python312
readonly FUNCTION_MEMORY=512Mi
# Up to three deliveries at once on the one instance: the run finishing, its continuation and
# a scheduled tick; with concurrency 1 the later ones would be refused with 429 and lost.
# Concurrency above 1 needs a whole vCPU.
readonly FUNCTION_CONCURRENCY=3
readonly FUNCTION_CPU=1
readonly TIME_ZONE=Etc/UTC
readonly REQUIRED_APIS=(
  cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com
  artifactregistry.googleapis.com eventarc.googleapis.com pubsub.googleapis.com
  cloudscheduler.googleapis.com secretmanager.googleapis.com storage.googleapis.com
  iam.googleapis.com logging.googleapis.com monitoring.googleapis.com
)
# What gcloud uploads: exactly these, copied into a staging directory (see stage_source).
readonly SOURCE_FILES=(main.py requirements.txt)
readonly SOURCE_PACKAGE=harness_audit

# Granted on single resources only. objectUser: get, list, create, update and delete objects
# (overwriting the checkpoint needs delete), nothing of bucket or IAM administration.
readonly RUNTIME_BUCKET_ROLE=roles/storage.objectUser
readonly SECRET_ROLE=roles/secretmanager.secretAccessor
readonly INVOKER_ROLE=roles/run.invoker
readonly PUBLISHER_ROLE=roles/pubsub.publisher
# The SecOps feed lists and reads objects, and reads the bucket's metadata first.
readonly SECOPS_BUCKET_ROLES=(roles/storage.objectViewer roles/storage.legacyBucketReader)

DRY_RUN=0
ASSUME_YES=0
DESTROY=0
CONFIRMED=0
CHANGES=0
SUMMARY=()
PROBLEMS=()
declare -A SETTING=()
SETTING_NAMES=()

usage() {
  cat <<'EOF'
Usage: ./deploy.sh [--dry-run] [--yes] [--destroy] [--OPTION=VALUE ...]

Deploys the Harness audit collector: APIs, bucket, runtime service account, the API key in
Secret Manager, Pub/Sub topic, Cloud Run function (gen2), Cloud Scheduler job, log-based
metrics with an alert policy, and read access for the Google SecOps feed. Idempotent.

  --dry-run   run only read-only gcloud commands; print a shell script of every command that
              would change something (the files it names are kept in .deploy/)
  --yes, -y   do not ask before the first change (needed when there is no terminal)
  --destroy   remove what deploy.sh created; never the bucket or its objects
  --help, -h  this text

Environment variables (or the option in brackets):
  PROJECT_ID              required  [--project]
  GCS_BUCKET              required  [--bucket]  created in REGION unless it exists
  HARNESS_ACCOUNT_ID      required  [--account-id] (not needed for --destroy)
  HARNESS_API_KEY         stored as a new secret version when set and different; when unset the
                          stored key is kept, or asked for on the terminal if there is none
  REGION                  default us-central1  [--region]
  SCHEDULE                default "0 * * * *", 5-field cron, UTC  [--schedule]
  FUNCTION_NAME           default harness-audit-collector  [--function-name]
  SECOPS_SERVICE_ACCOUNT  optional: the feed's service account  [--secops-service-account]
  NOTIFICATION_CHANNEL    optional: projects/PROJECT/notificationChannels/ID, for the alert
                          policy  [--notification-channel]
  RETRY_ON_FAILURE        default false; true deploys the function with --retry
  The function's settings (python -m harness_audit check-config --help) are passed to it when
  set, checked first exactly as the function checks them; TRIGGER_TOPIC is its own topic.

Exit status: 0 done, 1 a step failed or you declined, 2 fix the input or the environment.
EOF
}

# In a dry run every line is a shell comment, so that the output is a script of the changes.
say() {
  if ((DRY_RUN)); then printf '# %s\n' "$*"; else printf '%s\n' "$*"; fi
}
warn() { printf '%s: warning: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit "$EXIT_FAILED"; }
die_usage() { printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit "$EXIT_USAGE"; }
problem() { PROBLEMS+=("$*"); }

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
  # Full resource names: some commands resolve a short name before --project applies.
  TOPIC_PATH=projects/${PROJECT_ID}/topics/${TOPIC_NAME}
  SECRET_PATH=projects/${PROJECT_ID}/secrets/${SECRET_NAME}
  # The function publishes its continuation here: always its own topic.
  TRIGGER_TOPIC=$TOPIC_PATH
  MALLOC_MMAP_THRESHOLD_=131072
  METRIC_LAG=${FUNCTION_NAME}_lag_seconds
  METRIC_FAILED=${FUNCTION_NAME}_runs_failed
  METRIC_OK=${FUNCTION_NAME}_runs_ok
  POLICY_LABEL=harness_collector
  # Files gcloud reads are kept here, so that what --dry-run prints runs as it is.
  DEPLOY_DIR=$SCRIPT_DIR/.deploy/$FUNCTION_NAME
  # A service account id has 6-30 characters: shorten the function's name, keep the suffix.
  local sa_base=${FUNCTION_NAME:0:27}
  while [[ $sa_base == *- ]]; do sa_base=${sa_base%-}; done
  SA_ID=${sa_base}-sa
  SA_EMAIL=${SA_ID}@${PROJECT_ID}.iam.gserviceaccount.com
  SA_MEMBER=serviceAccount:${SA_EMAIL}
}

# A 5-field cron expression: each field a comma list of *, N, N-M (numbers in the field's
# range, or three-letter month and day names), each with an optional /STEP.
valid_cron() {
  local -a fields items lows=(0 0 1 1 0) highs=(59 23 31 12 7) names=('' '' '' \
    'JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC' 'SUN MON TUE WED THU FRI SAT')
  local i item value
  read -ra fields <<<"$1"
  ((${#fields[@]} == 5)) || return 1
  for i in 0 1 2 3 4; do
    [[ ${fields[i]} != ,* && ${fields[i]} != *, && ${fields[i]} != *,,* ]] || return 1
    IFS=, read -ra items <<<"${fields[i]}"
    for item in "${items[@]}"; do
      [[ $item =~ ^(\*|([0-9A-Za-z]+)(-([0-9A-Za-z]+))?)(/([0-9]{1,2}))?$ ]] || return 1
      [[ -z ${BASH_REMATCH[6]} ]] || ((10#${BASH_REMATCH[6]} > 0)) || return 1
      for value in "${BASH_REMATCH[2]}" "${BASH_REMATCH[4]}"; do
        if [[ $value =~ ^[0-9]{1,2}$ ]]; then
          ((10#$value >= lows[i] && 10#$value <= highs[i])) || return 1
        elif [[ -n $value ]]; then
          [[ ${#value} -eq 3 && " ${names[i]} " == *" ${value^^} "* ]] || return 1
        fi
      done
    done
  done
}

# Settings only the deploy uses, checked here where they are used.
check_deploy_settings() {
  if [[ -z $PROJECT_ID ]]; then
    problem "PROJECT_ID is not set: export PROJECT_ID=<your project id> (or --project=...)"
  elif [[ ! $PROJECT_ID =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]]; then
    problem "PROJECT_ID='$PROJECT_ID' is not a project id: 6-30 lowercase letters, digits and" \
      "dashes, starting with a letter (the id, not the project's display name or number)"
  fi
  if [[ ! $REGION =~ ^[a-z]+-[a-z]+[0-9]+$ ]]; then
    problem "REGION='$REGION' is not a region name: use one like us-central1 or europe-west1"
  fi
  # The limit of the Cloud Run service that carries a gen2 function; valid as a topic, secret
  # and job name too.
  if [[ ! (${#FUNCTION_NAME} -ge 3 && ${#FUNCTION_NAME} -le 49 &&
    $FUNCTION_NAME =~ ^[a-z]([a-z0-9-]*[a-z0-9])?$) ]]; then
    problem "FUNCTION_NAME='$FUNCTION_NAME' is not usable: 3-49 lowercase letters, digits and" \
      "dashes, starting with a letter and not ending with a dash"
  fi
  if [[ -n $SECOPS_SERVICE_ACCOUNT &&
    ! $SECOPS_SERVICE_ACCOUNT =~ ^[a-z0-9._-]+@[a-z0-9.-]+\.[a-z]+$ ]]; then
    problem "SECOPS_SERVICE_ACCOUNT='$SECOPS_SERVICE_ACCOUNT' is not a service account email:" \
      "copy it from SecOps (SIEM Settings > Feeds > Add New Feed > Get Service Account)"
  fi
  if ((DESTROY)); then
    [[ -n $GCS_BUCKET ]] ||
      problem "GCS_BUCKET is not set: export GCS_BUCKET=<bucket name> (or --bucket=...)"
    return 0
  fi
  if ! valid_cron "$SCHEDULE"; then
    problem "SCHEDULE='$SCHEDULE' is not a cron expression: give 5 fields, minute hour" \
      "day-of-month month day-of-week, e.g. '0 * * * *' (hourly) or '*/15 * * * *' (UTC)"
  fi
  if [[ $RETRY_ON_FAILURE != true && $RETRY_ON_FAILURE != false ]]; then
    problem "RETRY_ON_FAILURE='$RETRY_ON_FAILURE' must be true or false (default false)"
  fi
  if [[ -n $NOTIFICATION_CHANNEL &&
    ! $NOTIFICATION_CHANNEL =~ ^projects/([a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]+)/notificationChannels/[0-9]+$ ]]
  then
    problem "NOTIFICATION_CHANNEL='$NOTIFICATION_CHANNEL' is not a notification channel's full" \
      "name: projects/PROJECT/notificationChannels/ID (list them with: gcloud beta monitoring" \
      "channels list --project=$PROJECT_ID --format='value(name,displayName)')"
  fi
}

# The function's settings, checked by the function's own code (harness_audit/config.py) in the
# repository's virtualenv, built as make builds it, on exactly the environment deployed. Its
# problems join ours; on success SETTING[NAME] holds what the function will use.
check_function_settings() {
  local output status=0 line
  command -v make >/dev/null 2>&1 ||
    die_usage "make is not on PATH: install it (it builds the virtualenv that checks the settings)"
  make -s -C "$SCRIPT_DIR" .venv/.installed >&2 ||
    die_usage "could not build the virtualenv in $SCRIPT_DIR/.venv (make .venv/.installed)"
  output=$(cd -- "$SCRIPT_DIR" && printf '%s' "$API_KEY" |
    GCS_BUCKET=$GCS_BUCKET HARNESS_ACCOUNT_ID=$HARNESS_ACCOUNT_ID TRIGGER_TOPIC=$TRIGGER_TOPIC \
      .venv/bin/python -m harness_audit check-config --api-key-stdin 2>&1) || status=$?
  ((status == 0 || status == 2)) || die_usage "the settings check failed: $output"
  while IFS= read -r line; do
    case $line in
      "harness_audit check-config: error: "*) problem "${line#*: error: }" ;;
      "warning: "*) warn "${line#warning: }" ;;
      *=*)
        SETTING[${line%%=*}]=${line#*=}
        SETTING_NAMES+=("${line%%=*}")
        ;;
    esac
  done <<<"$output"
}

check_inputs() {
  check_deploy_settings
  if ((!DESTROY)); then
    check_function_settings
  fi
  if ((${#PROBLEMS[@]})); then
    printf '%s\n' "${PROBLEMS[@]/#/"$SCRIPT_NAME: error: "}" >&2
    printf '%s: nothing was changed; fix the above and run again (see --help)\n' \
      "$SCRIPT_NAME" >&2
    exit "$EXIT_USAGE"
  fi
  if [[ -n ${SETTING[GCS_PREFIX]-} ]]; then
    FEED_URI=gs://$GCS_BUCKET/${SETTING[GCS_PREFIX]}/
  else
    FEED_URI=gs://$GCS_BUCKET/
  fi
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
  # Alert policies have gcloud commands in the alpha track only.
  [[ -n $(gcloud version --format='value(alpha)' 2>/dev/null) ]] ||
    die_usage "gcloud's alpha component is not installed, and deploy.sh needs it for the" \
      "alert policy: run 'gcloud components install alpha' (or install the package that" \
      "provides it, e.g. google-cloud-cli-alpha), then run this again"
}

# --- running gcloud ---------------------------------------------------------------------------

# A command as it can be pasted back into a shell.
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

# A yes/no question on the terminal; without one, refuse rather than guess.
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

# Read-only gcloud, run in --dry-run too. A failure reads as "absent"; a real problem
# resurfaces when the create that follows fails loudly.
query() { gcloud "$@" --project="$PROJECT_ID" 2>/dev/null; }

# A change is printed as it is in a dry run (the output is a script), after "+ " otherwise.
show_change() {
  CHANGES=$((CHANGES + 1))
  if ((DRY_RUN)); then printf '%s\n' "$1"; else printf '+ %s\n' "$1"; fi
}

# A gcloud command that changes something: printed, and run unless --dry-run. --quiet keeps
# gcloud from prompting.
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

# Like mutate, with the key on stdin from printf (a builtin: never an argument of a process).
# Printed as a step that reads the key from the terminal, never from the script's next line.
mutate_with_key_on_stdin() {
  local -a command=(gcloud "$@" --project="$PROJECT_ID" --quiet)
  show_change "read -rsp 'Harness API key (input hidden): ' key </dev/tty && printf %s \"\$key\" |\
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

step() {
  say ""
  say "[$1] $2"
}

# record WHAT NAME STATE: one line of the closing summary.
record() { SUMMARY+=("$(printf '  %-24s %-60s %s' "$1" "$2" "$3")"); }

# The word for a change, in the mood of this run.
did() { if ((DRY_RUN)); then printf 'would %s' "$1"; else printf '%s' "$2"; fi; }

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum | cut -d' ' -f1
  else
    shasum -a 256 | cut -d' ' -f1
  fi
}

# fill TEMPLATE: deploy/TEMPLATE with each @NAME@ replaced by the shell variable NAME. Only
# checked names and numbers go in, so nothing needs JSON escaping.
fill() {
  local text name
  text=$(<"$SCRIPT_DIR/deploy/$1")
  while [[ $text =~ @([A-Z_]+)@ ]]; do
    name=${BASH_REMATCH[1]}
    text=${text//"@$name@"/${!name}}
  done
  printf '%s\n' "$text"
}

# write_fingerprinted FILE TEMPLATE: the template filled with FINGERPRINT, a hash of itself
# filled without one (how a later run knows the object is current); prints FINGERPRINT.
write_fingerprinted() {
  local FINGERPRINT=''
  FINGERPRINT=$(fill "$2" | sha256)
  FINGERPRINT=${FINGERPRINT:0:40}
  fill "$2" >"$1"
  printf '%s' "$FINGERPRINT"
}

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
  # The function would refuse what it cannot send: check the key as it checks it.
  check_inputs
}

step_apis() {
  step 1/10 "APIs"
  local enabled api
  local -a missing=()
  enabled=$(query services list --enabled --format='value(config.name)') || enabled=''
  for api in "${REQUIRED_APIS[@]}"; do
    grep -Fxq -- "$api" <<<"$enabled" || missing+=("$api")
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

# The bindings of a resource's IAM policy, one "ROLE<tab>MEMBER" a line.
# bindings COMMAND_PREFIX RESOURCE [FLAGS...]
bindings() {
  local -a words
  read -ra words <<<"$1"
  query "${words[@]}" get-iam-policy "${@:2}" --flatten='bindings[].members' \
    --format='value(bindings.role,bindings.members)'
}

# ensure_binding ROLE MEMBER COMMAND_PREFIX RESOURCE [FLAGS...]: grant ROLE on that resource.
ensure_binding() {
  local role=$1 member=$2 policy
  local -a words
  read -ra words <<<"$3"
  policy=$(bindings "${@:3}") || policy=''
  if grep -Fxq -- "$role"$'\t'"$member" <<<"$policy"; then
    say "      $role for ${member#*:} on $4: already granted"
    record "  $role" "${member#*:}" "granted"
    return 0
  fi
  mutate_retrying "${words[@]}" add-iam-policy-binding "${@:4}" --member="$member" --role="$role"
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
  ensure_binding "$RUNTIME_BUCKET_ROLE" "$SA_MEMBER" "storage buckets" "gs://$GCS_BUCKET"
}

# True when the latest version already holds API_KEY: compared in this shell, never printed.
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
  if [[ $KEY_SOURCE == stored ]]; then
    say "      HARNESS_API_KEY not set: the stored key is kept"
    record "  key" "latest version" "kept"
  elif [[ $KEY_SOURCE == environment ]] && ((!created)) && stored_key_matches; then
    say "      the latest version already holds this HARNESS_API_KEY"
    record "  key" "latest version" "unchanged"
  else
    if [[ $KEY_SOURCE == terminal ]] && ((DRY_RUN)); then
      say "      no key stored and HARNESS_API_KEY not set: a real run asks on the terminal"
    fi
    mutate_with_key_on_stdin secrets versions add "$SECRET_PATH" --data-file=-
    record "  key" "new version" "$(did add added)"
  fi
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
  # For the continuation it publishes to its own trigger topic.
  ensure_binding "$PUBLISHER_ROLE" "$SA_MEMBER" "pubsub topics" "$TOPIC_PATH"
}

# The function's environment: each of its settings that is set, as single-quoted YAML (every
# character literal but ', written twice); commas (FILTER_MODULES=CD,CI) rule out
# --set-env-vars.
write_env_file() {
  local name value squote="''"
  mkdir -p -- "$DEPLOY_DIR"
  : >"$ENV_FILE"
  for name in "${SETTING_NAMES[@]}" MALLOC_MMAP_THRESHOLD_; do
    value=${!name-}
    if [[ -n $value ]]; then
      printf "%s: '%s'\n" "$name" "${value//\'/$squote}" >>"$ENV_FILE"
    fi
  done
}

# The upload: exactly main.py, requirements.txt and the package's .py files, copied into a
# directory of their own, so that nothing else beside them can ever be uploaded.
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

# What gcloud uploads: path and content of each file, in a stable order.
source_fingerprint() {
  (
    cd -- "$SOURCE_DIR"
    find . -type f -print | LC_ALL=C sort | while IFS= read -r path; do
      printf '%s %s\n' "$(sha256 <"$path")" "${path#./}"
    done
  )
}

step_function() {
  step 6/10 "Function $FUNCTION_NAME ($FUNCTION_RUNTIME, gen2, region $REGION)"
  ENV_FILE=$DEPLOY_DIR/function-env.yaml
  write_env_file
  stage_source
  # No --retry by default: the next scheduled run is the retry, and the checkpoint makes it
  # lossless. --trigger-topic is the one topic argument gcloud wants short.
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
  # A label holds a fingerprint of what is uploaded and of this exact configuration: a re-run
  # redeploys only when one of them changed, or the last deploy did not end ACTIVE.
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
  # The Pub/Sub trigger calls the function as the runtime service account.
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

# The longest time between two runs, by a rule: "*/N * * * *" every N minutes; any other
# schedule with hour, day, month and weekday "*" at most an hour; "M */H * * *" H hours;
# anything else counts as daily or rarer.
schedule_interval_minutes() {
  local -a fields
  read -ra fields <<<"$SCHEDULE"
  if [[ "${fields[*]:2}" != '* * *' ]]; then
    printf 1440
  elif [[ ${fields[1]} == '*' && ${fields[0]} =~ ^\*/([0-9]+)$ ]]; then
    printf '%d' "$((10#${BASH_REMATCH[1]}))"
  elif [[ ${fields[1]} == '*' ]]; then
    printf 60
  elif [[ ${fields[1]} =~ ^\*/([0-9]+)$ ]]; then
    printf '%d' "$((10#${BASH_REMATCH[1]} * 60))"
  else
    printf 1440
  fi
}

# The alert's numbers, for the templates. Cloud Monitoring's windows are 23.5 h at most; when
# two runs lie further apart there is no absence condition, and one failure alerts.
alert_numbers() {
  local interval max=1410 minutes
  interval=$(schedule_interval_minutes)
  ALERT_LAG_MINUTES=${SETTING[ALERT_LAG_MINUTES]}
  ALERT_LAG_SECONDS=$((ALERT_LAG_MINUTES * 60))
  LAG_WINDOW_SECONDS=$((interval < max ? interval * 60 : max * 60))
  TWO_INTERVALS_MINUTES=$((2 * interval))
  FAILURES_THRESHOLD=1
  ABSENCE_CONDITION=''
  if ((TWO_INTERVALS_MINUTES > max)); then
    TWO_INTERVALS_MINUTES=$max
    FAILURES_THRESHOLD=0
  fi
  TWO_INTERVALS_SECONDS=$((TWO_INTERVALS_MINUTES * 60))
  if ((FAILURES_THRESHOLD)); then
    ABSENCE_CONDITION=$'\n'$(fill condition-absent.json)
  fi
  CHANNELS=${NOTIFICATION_CHANNEL:+\"$NOTIFICATION_CHANNEL\"}
  # The lag distribution's bucket bounds include the threshold, so that the 99th percentile
  # Monitoring interpolates lies above it exactly when a run's lag does.
  local -a bounds
  mapfile -t bounds < <(for minutes in 1 2 5 10 15 30 45 60 90 120 180 240 360 480 720 1080 \
    1440 2160 2880 4320 7200 10080 20160 "$ALERT_LAG_MINUTES"; do
    printf '%d\n' "$((minutes * 60))"
  done | sort -n -u)
  printf -v LAG_BOUNDS '%s, ' "${bounds[@]}"
  LAG_BOUNDS=${LAG_BOUNDS%, }
}

# ensure_metric NAME TEMPLATE [OUTCOME]
ensure_metric() {
  local name=$1 file=$DEPLOY_DIR/metric-$1.json fingerprint description OUTCOME=${3-}
  fingerprint=$(write_fingerprinted "$file" "$2")
  if description=$(query logging metrics describe "$name" --format='value(description)'); then
    if [[ $description == *"[deploy.sh $fingerprint]" ]]; then
      say "      metric $name: exists, current"
      record "Log-based metric" "$name" "current"
      return 0
    fi
    mutate logging metrics update "$name" --config-from-file="$file"
    record "Log-based metric" "$name" "$(did update updated)"
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
  local file=$DEPLOY_DIR/alert-policy.json fingerprint current name label
  alert_numbers
  ensure_metric "$METRIC_OK" metric-counter.json ok
  ensure_metric "$METRIC_FAILED" metric-counter.json failed
  ensure_metric "$METRIC_LAG" metric-lag.json
  fingerprint=$(write_fingerprinted "$file" alert-policy.json)
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
  say "      alerts when the lag exceeds $ALERT_LAG_MINUTES min, on $((FAILURES_THRESHOLD + 1))" \
    "failed run(s) within $TWO_INTERVALS_MINUTES min,"
  if [[ -n $ABSENCE_CONDITION ]]; then
    say "      and when no run succeeds for $TWO_INTERVALS_MINUTES min (two schedule intervals)"
  else
    say "      but runs are further apart than Cloud Monitoring waits (23.5 h): a schedule that"
    say "      stops is not noticed"
  fi
  if [[ -n $NOTIFICATION_CHANNEL ]]; then
    say "      notifies $NOTIFICATION_CHANNEL"
    record "  notification channel" "$NOTIFICATION_CHANNEL" "attached"
  else
    record "  notification channel" "(NOTIFICATION_CHANNEL not set)" "none"
  fi
}

# --- the SecOps feed --------------------------------------------------------------------------

print_feed_settings() {
  local state=gs://$GCS_BUCKET/${SETTING[STATE_KEY]}
  say "      Feed settings for Google SecOps (SIEM Settings > Feeds > Add New Feed):"
  say "        Source type:             Google Cloud Storage V2"
  say "        Log type:                Harness IO"
  say "        Storage bucket URL:      $FEED_URI"
  say "        Source deletion option:  Never (the access granted here is read-only)"
  if [[ $state == "$FEED_URI"* ]]; then
    say "      WARNING: the checkpoint $state lies UNDER that URL: the feed would ingest it."
    say "      Move STATE_KEY outside GCS_PREFIX and run again."
  else
    say "      The checkpoint $state lies outside that URL: the feed never reads it."
  fi
}

step_secops() {
  step 9/10 "Google SecOps feed access"
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

# --- the end of a deploy ----------------------------------------------------------------------

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
  say "Force a run now:"
  say "  gcloud scheduler jobs run $JOB_NAME --location=$REGION --project=$PROJECT_ID"
  say "Read the function's logs:"
  say "  gcloud functions logs read $FUNCTION_NAME --gen2 --region=$REGION" \
    "--project=$PROJECT_ID --limit=50"
  say "See what landed:"
  say "  gcloud storage ls --recursive $FEED_URI --project=$PROJECT_ID | tail"
  if [[ -z $NOTIFICATION_CHANNEL ]]; then
    say "The alert policy notifies no one yet. List the project's notification channels:"
    say "  gcloud beta monitoring channels list --project=$PROJECT_ID" \
      "--format='value(name,displayName)'"
    say "then run deploy.sh again with NOTIFICATION_CHANNEL=projects/$PROJECT_ID/notificationChannels/ID."
  fi
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
  step_alerting
  step_secops
  print_summary
}

# --- destroy ----------------------------------------------------------------------------------

# What --destroy removes, in this order (the trigger first, then what it calls; bindings before
# the account they name): "WHAT|READ-ONLY QUERY|LINE IT MUST PRINT (or any)|DELETE", where {}
# in DELETE stands for the query's first word.
destroy_table() {
  local member role tab=$'\t'
  local -a members=("$RUNTIME_BUCKET_ROLE $SA_MEMBER")
  if [[ -n $SECOPS_SERVICE_ACCOUNT ]]; then
    for role in "${SECOPS_BUCKET_ROLES[@]}"; do
      members+=("$role serviceAccount:$SECOPS_SERVICE_ACCOUNT")
    done
  fi
  printf '%s\n' \
    "scheduler job $JOB_NAME|scheduler jobs describe $JOB_NAME --location=$REGION --format=value(name)||scheduler jobs delete $JOB_NAME --location=$REGION" \
    "function $FUNCTION_NAME (with its Cloud Run service and Eventarc trigger)|functions describe $FUNCTION_NAME --gen2 --region=$REGION --format=value(name)||functions delete $FUNCTION_NAME --gen2 --region=$REGION" \
    "alert policy|alpha monitoring policies list --filter=userLabels.$POLICY_LABEL=$FUNCTION_NAME --format=value(name)||alpha monitoring policies delete {}"
  for member in "$METRIC_OK" "$METRIC_FAILED" "$METRIC_LAG"; do
    printf '%s\n' "log-based metric $member|logging metrics describe $member --format=value(name)||logging metrics delete $member"
  done
  printf '%s\n' \
    "topic $TOPIC_NAME (with its role bindings)|pubsub topics describe $TOPIC_PATH --format=value(name)||pubsub topics delete $TOPIC_PATH" \
    "secret $SECRET_NAME and every version of the key|secrets describe $SECRET_PATH --format=value(name)||secrets delete $SECRET_PATH"
  for member in "${members[@]}"; do
    printf '%s\n' "${member% *} for ${member#*:} on gs://$GCS_BUCKET|storage buckets get-iam-policy gs://$GCS_BUCKET --flatten=bindings[].members --format=value(bindings.role,bindings.members)|${member% *}$tab${member#* }|storage buckets remove-iam-policy-binding gs://$GCS_BUCKET --member=${member#* } --role=${member% *}"
  done
  printf '%s\n' "service account $SA_EMAIL|iam service-accounts describe $SA_EMAIL --format=value(email)||iam service-accounts delete $SA_EMAIL"
}

destroy() {
  local - what look expect delete output command
  local -a found=() deletes=()
  set -f # the table's words are split, never globbed
  while IFS='|' read -r what look expect delete; do
    # shellcheck disable=SC2086
    output=$(query $look) || continue
    if [[ -z $output ]] || { [[ -n $expect ]] && ! grep -Fxq -- "$expect" <<<"$output"; }; then
      continue
    fi
    found+=("${what/#alert policy/alert policy ${output%%[[:space:]]*}}")
    deletes+=("${delete//\{\}/${output%%[[:space:]]*}}")
  done < <(destroy_table)

  say ""
  say "Kept: gs://$GCS_BUCKET and every object in it (logs and checkpoint), and the enabled APIs."
  say "(The local copies deploy.sh made, in ${DEPLOY_DIR#"$SCRIPT_DIR"/}, stay too: delete at will.)"
  if [[ -z $SECOPS_SERVICE_ACCOUNT ]]; then
    say "(SECOPS_SERVICE_ACCOUNT not set: any access granted to the feed stays.)"
  fi
  if ((${#found[@]} == 0)); then
    say "Nothing to remove: none of what deploy.sh creates exists in project $PROJECT_ID."
    return 0
  fi
  say "To remove from project $PROJECT_ID:"
  for command in "${found[@]}"; do
    say "  - $command"
  done
  if ((!DRY_RUN && !ASSUME_YES)); then
    ask "Remove these ${#found[@]} item(s) from project $PROJECT_ID?" ||
      die "stopped at your answer: nothing was removed"
  fi
  CONFIRMED=1
  say ""
  for command in "${deletes[@]}"; do
    # shellcheck disable=SC2086
    mutate $command
  done
  say ""
  if ((DRY_RUN)); then
    say "Dry run: $CHANGES command(s) above would remove something; nothing was changed."
  else
    say "Removed ${#found[@]} item(s). gs://$GCS_BUCKET and its objects are untouched."
  fi
}

# --- main -------------------------------------------------------------------------------------

main() {
  parse_args "$@"
  apply_defaults
  check_inputs
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
