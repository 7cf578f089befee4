#!/usr/bin/env bash
# deploy.sh: from an empty Google Cloud project to the Harness audit collector on a schedule,
# and (--destroy) back. Every step looks before it touches: a second run changes nothing. The
# API key travels on stdin only. The README's "Deploy" section explains each step.
# shellcheck disable=SC2034  # the templates' variables are read through ${!name}

if [ -z "${BASH_VERSION-}" ]; then exec bash "$0" "$@"; fi # `sh deploy.sh`: go on in bash
set -euo pipefail
((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] >= 404)) || {
  echo "deploy.sh: error: needs bash 4.4 or newer, not $BASH_VERSION (macOS: brew install bash)" >&2
  exit 2
}

# Out of the environment first thing: no child process sees (or logs) the key through it.
API_KEY=${HARNESS_API_KEY-}
declare +x API_KEY
unset HARNESS_API_KEY

SCRIPT_NAME=${0##*/}
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
readonly SCRIPT_NAME SCRIPT_DIR
readonly EXIT_FAILED=1 EXIT_USAGE=2 # 1: a step failed or you declined; 2: fix the input

# Event-driven functions run 540 s at most (config.py keeps MAX_RUN_SECONDS below it).
readonly FUNCTION_TIMEOUT_SECONDS=540 FUNCTION_RUNTIME=python312 FUNCTION_MEMORY=512Mi
# Up to three deliveries at once (the run finishing, its continuation, a scheduled tick), or
# the later ones are refused with 429 and lost; concurrency above 1 needs a whole vCPU.
readonly FUNCTION_CONCURRENCY=3 FUNCTION_CPU=1 TIME_ZONE=Etc/UTC
readonly REQUIRED_APIS=(
  cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com
  artifactregistry.googleapis.com eventarc.googleapis.com pubsub.googleapis.com
  cloudscheduler.googleapis.com secretmanager.googleapis.com storage.googleapis.com
  iam.googleapis.com logging.googleapis.com monitoring.googleapis.com
)
readonly SOURCE_FILES=(main.py requirements.txt) SOURCE_PACKAGE=harness_audit
# Granted on single resources only. objectUser: get, list, create, update and delete objects
# (overwriting the checkpoint needs delete), nothing of bucket or IAM administration.
readonly RUNTIME_BUCKET_ROLE=roles/storage.objectUser SECRET_ROLE=roles/secretmanager.secretAccessor
readonly INVOKER_ROLE=roles/run.invoker PUBLISHER_ROLE=roles/pubsub.publisher
# The SecOps feed lists and reads objects, and reads the bucket's metadata first.
readonly SECOPS_BUCKET_ROLES=(roles/storage.objectViewer roles/storage.legacyBucketReader)

DRY_RUN=0 ASSUME_YES=0 DESTROY=0 CONFIRMED=0 CHANGES=0 SKIP_HARNESS_CHECK=${SKIP_HARNESS_CHECK:-0}
PROBLEMS=() SETTING_NAMES=()
declare -A SETTING=()
declare -rA OPTIONS=([--project]=PROJECT_ID [--region]=REGION [--bucket]=GCS_BUCKET
  [--account-id]=HARNESS_ACCOUNT_ID [--function-name]=FUNCTION_NAME [--schedule]=SCHEDULE
  [--verify-schedule]=VERIFY_SCHEDULE
  [--secops-service-account]=SECOPS_SERVICE_ACCOUNT [--notification-channel]=NOTIFICATION_CHANNEL)

usage() {
  cat <<'EOF'
Usage: ./deploy.sh [--dry-run] [--yes] [--destroy] [--OPTION=VALUE ...]
Deploys the Harness audit collector: APIs, bucket, service account, the key in Secret Manager,
topic, Cloud Run function, two scheduler jobs, metrics, alert policy, dashboard, SecOps feed access.
  --dry-run   run read-only gcloud commands only; print a script of the changes
  --yes, -y   do not ask before the first change (needed without a terminal)
  --destroy   remove what deploy.sh created; never the bucket or its objects
  --skip-harness-check  do not first ask Harness whether it accepts the key
Environment variables [or option]:
  PROJECT_ID [--project], GCS_BUCKET [--bucket], HARNESS_ACCOUNT_ID [--account-id]: required
  HARNESS_API_KEY: stored when set and new; else the stored key is kept, or asked for
  REGION [--region] us-central1; SCHEDULE [--schedule] "0 * * * *" (cron, UTC)
  VERIFY_SCHEDULE [--verify-schedule] "17 4 * * *": the verify of the last settled day (UTC)
  FUNCTION_NAME [--function-name] harness-audit-collector; RETRY_ON_FAILURE false
  SECOPS_INSTANCE: optional, the SecOps customer id: deploy.sh then creates the feed, with
    SECOPS_REGION (us, eu, europe-west2...) and SECOPS_PROJECT (default PROJECT_ID)
  SECOPS_SERVICE_ACCOUNT [--secops-service-account]: without SECOPS_INSTANCE, the feed's account
  NOTIFICATION_CHANNEL [--notification-channel]: optional, projects/P/notificationChannels/ID
  The function's settings (python -m harness_audit check-config --help) pass through to it.
Exit status: 0 done, 1 a step failed or you declined, 2 fix the input or the environment.
EOF
}

# In a dry run every line is a shell comment, so that the output is a script of the changes.
say() { if ((DRY_RUN)); then printf '# %s\n' "$*"; else printf '%s\n' "$*"; fi; }
warn() { printf '%s: warning: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit "$EXIT_FAILED"; }
die_usage() { printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit "$EXIT_USAGE"; }
problem() { PROBLEMS+=("$*"); }

parse_args() {
  local arg
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
      --*=*) set -- "${arg%%=*}" "${arg#*=}" "$@" ;;
      --*)
        [[ -n ${OPTIONS[$arg]-} ]] || die_usage "unknown option '$arg' (see --help)"
        (($#)) || die_usage "option $arg needs a value (see --help)"
        printf -v "${OPTIONS[$arg]}" '%s' "$1"
        shift ;;
      *) die_usage "unexpected argument '$arg' (see --help)" ;;
    esac
  done
}

apply_defaults() {
  PROJECT_ID=${PROJECT_ID-} GCS_BUCKET=${GCS_BUCKET-} HARNESS_ACCOUNT_ID=${HARNESS_ACCOUNT_ID-}
  REGION=${REGION:-us-central1} SCHEDULE=${SCHEDULE:-0 * * * *} VERIFY_SCHEDULE=${VERIFY_SCHEDULE:-17 4 * * *}
  FUNCTION_NAME=${FUNCTION_NAME:-harness-audit-collector} NOTIFICATION_CHANNEL=${NOTIFICATION_CHANNEL-}
  RETRY_ON_FAILURE=${RETRY_ON_FAILURE:-false} SECOPS_SERVICE_ACCOUNT=${SECOPS_SERVICE_ACCOUNT-}
  SECOPS_SERVICE_ACCOUNT=${SECOPS_SERVICE_ACCOUNT#serviceAccount:}
  # Names derived from the function's (two collectors can live in one project); full resource
  # names, as some commands resolve a short name before --project applies.
  TOPIC_NAME=${FUNCTION_NAME}-trigger JOB_NAME=${FUNCTION_NAME}-schedule
  VERIFY_JOB_NAME=${FUNCTION_NAME}-verify PROMQL_PREFIX=logging_googleapis_com:user_${FUNCTION_NAME//-/_}
  SECRET_NAME=${FUNCTION_NAME}-api-key TOPIC_PATH=projects/${PROJECT_ID}/topics/${TOPIC_NAME}
  SECRET_PATH=projects/${PROJECT_ID}/secrets/${SECRET_NAME}
  # The function publishes its continuation to its own topic, whatever the environment says.
  TRIGGER_TOPIC=$TOPIC_PATH
  # glibc's mmap threshold pinned, or memory grows with volume (make bench: +11.8 MB from
  # 100k to 200k events without it, +4.6 MB with it).
  MALLOC_MMAP_THRESHOLD_=131072
  METRIC_LAG=${FUNCTION_NAME}_lag_seconds METRIC_FAILED=${FUNCTION_NAME}_runs_failed
  METRIC_OK=${FUNCTION_NAME}_runs_ok POLICY_LABEL=harness_collector
  # Files gcloud reads are kept here, so that what --dry-run prints runs as it is.
  DEPLOY_DIR=$SCRIPT_DIR/.deploy/$FUNCTION_NAME
  # A service account id has 6-30 characters: shorten the function's name, keep the suffix.
  local sa_base=${FUNCTION_NAME:0:27}
  while [[ $sa_base == *- ]]; do sa_base=${sa_base%-}; done
  SA_ID=${sa_base}-sa SA_EMAIL=${sa_base}-sa@${PROJECT_ID}.iam.gserviceaccount.com
  SA_MEMBER=serviceAccount:${sa_base}-sa@${PROJECT_ID}.iam.gserviceaccount.com
}

# A 5-field cron expression: each field a comma list of *, N or N-M (numbers in the field's
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
  [[ $REGION =~ ^[a-z]+-[a-z]+[0-9]+$ ]] ||
    problem "REGION='$REGION' is not a region name: use one like us-central1 or europe-west1"
  # The limit of the Cloud Run service that carries a gen2 function.
  [[ ${#FUNCTION_NAME} -ge 3 && ${#FUNCTION_NAME} -le 49 &&
    $FUNCTION_NAME =~ ^[a-z]([a-z0-9-]*[a-z0-9])?$ ]] ||
    problem "FUNCTION_NAME='$FUNCTION_NAME' is not usable: 3-49 lowercase letters, digits and" \
      "dashes, starting with a letter and not ending with a dash"
  [[ -z $SECOPS_SERVICE_ACCOUNT || $SECOPS_SERVICE_ACCOUNT =~ ^[a-z0-9._-]+@[a-z0-9.-]+\.[a-z]+$ ]] ||
    problem "SECOPS_SERVICE_ACCOUNT='$SECOPS_SERVICE_ACCOUNT' is not a service account email:" \
      "copy it from SecOps (SIEM Settings > Feeds > Add New Feed > Get Service Account)"
  if ((DESTROY)); then
    [[ -n $GCS_BUCKET ]] ||
      problem "GCS_BUCKET is not set: export GCS_BUCKET=<bucket name> (or --bucket=...)"
    return 0
  fi
  valid_cron "$SCHEDULE" ||
    problem "SCHEDULE='$SCHEDULE' is not a cron expression: give 5 fields, minute hour" \
      "day-of-month month day-of-week, e.g. '0 * * * *' (hourly) or '*/15 * * * *' (UTC)"
  valid_cron "$VERIFY_SCHEDULE" ||
    problem "VERIFY_SCHEDULE='$VERIFY_SCHEDULE' is not a cron expression: give 5 fields," \
      "e.g. '17 4 * * *' (daily at 04:17 UTC, a quiet hour)"
  [[ $RETRY_ON_FAILURE == true || $RETRY_ON_FAILURE == false ]] ||
    problem "RETRY_ON_FAILURE='$RETRY_ON_FAILURE' must be true or false (default false)"
  [[ -z $NOTIFICATION_CHANNEL || $NOTIFICATION_CHANNEL =~ \
    ^projects/([a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]+)/notificationChannels/[0-9]+$ ]] ||
    problem "NOTIFICATION_CHANNEL='$NOTIFICATION_CHANNEL' is not a notification channel's full" \
      "name: projects/PROJECT/notificationChannels/ID (list them with: gcloud beta monitoring" \
      "channels list --project=$PROJECT_ID --format='value(name,displayName)')"
}

# The function's settings, checked by the function's own code (harness_audit/config.py) in the
# repository's virtualenv, built as make builds it, on exactly the environment deployed. Its
# problems join ours; SETTING[NAME] holds what the function will use.
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
  SETTING_NAMES=()
  while IFS= read -r line; do
    case $line in
      "harness_audit check-config: error: "*) problem "${line#*: error: }" ;;
      "warning: "*) warn "${line#warning: }" ;;
      *=*) SETTING[${line%%=*}]=${line#*=} SETTING_NAMES+=("${line%%=*}") ;;
    esac
  done <<<"$output"
}

check_inputs() {
  check_deploy_settings
  ((DESTROY)) || check_function_settings
  if ((${#PROBLEMS[@]})); then
    printf '%s\n' "${PROBLEMS[@]/#/"$SCRIPT_NAME: error: "}" >&2
    printf '%s: nothing was changed; fix the above and run again (see --help)\n' "$SCRIPT_NAME" >&2
    exit "$EXIT_USAGE"
  fi
  local prefix=${SETTING[GCS_PREFIX]-}
  FEED_URI=gs://$GCS_BUCKET/${prefix:+$prefix/}
}

check_gcloud() {
  command -v gcloud >/dev/null 2>&1 ||
    die_usage "gcloud is not on PATH: install the Google Cloud CLI" \
      "(https://cloud.google.com/sdk/docs/install) or run this from Cloud Shell"
  ACCOUNT=$(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null) ||
    ACCOUNT=''
  ACCOUNT=${ACCOUNT%%$'\n'*}
  [[ -n $ACCOUNT ]] ||
    die_usage "gcloud is not logged in: run 'gcloud auth login' (or activate a service" \
      "account), then run this again"
  gcloud projects describe "$PROJECT_ID" --format='value(projectId)' >/dev/null 2>&1 ||
    die_usage "project '$PROJECT_ID' was not found or $ACCOUNT cannot see it:" \
      "check PROJECT_ID (the id, not the display name) and your access"
  # Alert policies have gcloud commands in the alpha track only.
  [[ -n $(gcloud version --format='value(alpha)' 2>/dev/null) ]] ||
    die_usage "gcloud's alpha component is not installed, and deploy.sh needs it for the" \
      "alert policy: run 'gcloud components install alpha' (or install the package that" \
      "provides it, e.g. google-cloud-cli-alpha), then run this again"
}

# A command as it can be pasted back into a shell.
quoted() {
  local out='' arg squote="'\\''"
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then out+=" $arg"; else out+=" '${arg//\'/$squote}'"; fi
  done
  printf '%s' "${out# }"
}

# A yes/no question on the terminal; without one, refuse rather than guess.
have_tty() { (true </dev/tty) 2>/dev/null; }
ask() {
  local answer=''
  have_tty ||
    die_usage "$1 There is no terminal to ask on: pass --yes to go ahead without asking (or" \
      "--dry-run to see every step first)."
  printf '%s [y/N] ' "$1" >/dev/tty
  IFS= read -r answer </dev/tty || answer=''
  [[ $answer =~ ^[[:space:]]*[Yy]([Ee][Ss])?[[:space:]]*$ ]]
}

# Read-only gcloud, run in --dry-run too. A failure reads as "absent"; a real problem
# resurfaces when the create that follows fails loudly.
query() { gcloud "$@" --project="$PROJECT_ID" 2>/dev/null; }

# A gcloud command that changes something: printed (as it is in a dry run, whose output is a
# script; after "+ " otherwise), and run unless --dry-run, after the first change is confirmed.
# try_change [--key] ARGS...: --key pipes the API key in (printf is a builtin: the key is never
# an argument of a process); printed as a step that reads it from the terminal, hidden.
try_change() {
  local key=0 shown
  if [[ $1 == --key ]]; then key=1 && shift; fi
  local -a command=(gcloud "$@" --project="$PROJECT_ID" --quiet)
  shown=$(quoted "${command[@]}")
  if ((key)); then
    shown="read -rsp 'Harness API key (input hidden): ' key </dev/tty && printf %s \"\$key\" | $shown"
  fi
  CHANGES=$((CHANGES + 1))
  if ((DRY_RUN)); then printf '%s\n' "$shown" && return 0; fi
  printf '+ %s\n' "$shown"
  confirm_first_change
  if ((key)); then printf '%s' "$API_KEY" | "${command[@]}"; else "${command[@]}"; fi
}

confirm_first_change() {
  if ((!ASSUME_YES && !CONFIRMED)); then
    ask "Make this and the remaining changes in project $PROJECT_ID?" ||
      die "stopped at your answer, before the first change: nothing was changed"
    CONFIRMED=1
  fi
}

mutate() {
  try_change "$@" ||
    die "the gcloud command above failed: fix what it says, then run deploy.sh again (what" \
      "is already in place is skipped)"
}

# IAM can refuse a service account for a few seconds after it was created; retry those.
mutate_retrying() {
  local attempt delay=${DEPLOY_RETRY_DELAY_SECONDS:-10}
  for attempt in 1 2 3 4 5; do
    try_change "$@" && return 0
    warn "retrying in ${delay}s (a new service account can take a moment to reach IAM)"
    sleep "$delay"
  done
  mutate "$@"
}

step() { say "" && say "[$1] $2"; }

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -d' ' -f1; else shasum -a 256 | cut -d' ' -f1; fi
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

# exists_or_create WHAT 'DESCRIBE ARGS' CREATE ARGS...: create unless the describe finds it.
exists_or_create() {
  local what=$1 look=$2
  shift 2
  # shellcheck disable=SC2086 # the describe's words, split on purpose
  if query $look >/dev/null; then say "      $what exists"; else mutate "$@"; fi
}

# Before any change, know where the key will come from: env, what is stored, or the terminal.
resolve_api_key() {
  KEY_SOURCE=environment
  [[ -z $API_KEY ]] || return 0
  KEY_SOURCE=stored
  [[ -z $(query secrets versions list "$SECRET_PATH" --filter=state:ENABLED --limit=1 \
    --format='value(name)') ]] || return 0
  KEY_SOURCE=terminal
  ((!DRY_RUN)) || return 0
  have_tty ||
    die_usage "HARNESS_API_KEY is not set and secret $SECRET_NAME holds no key yet, and there" \
      "is no terminal to ask on: export HARNESS_API_KEY (for example: read -rs" \
      "HARNESS_API_KEY && export HARNESS_API_KEY) and run again"
  printf 'Harness API key for account %s (input hidden): ' "$HARNESS_ACCOUNT_ID" >/dev/tty
  IFS= read -rs API_KEY </dev/tty || API_KEY=''
  printf '\n' >/dev/tty
  [[ -n $API_KEY ]] || die_usage "no API key was entered: nothing was changed"
  check_inputs # the key as the function will check it
}

step_apis() {
  step 1/10 "APIs"
  local enabled
  local -a missing
  enabled=$(query services list --enabled --format='value(config.name)') || enabled=''
  mapfile -t missing < <(printf '%s\n' "${REQUIRED_APIS[@]}" | grep -Fxv -e "$enabled")
  if ((${#missing[@]})); then
    mutate services enable "${missing[@]}"
  else
    say "      all ${#REQUIRED_APIS[@]} enabled"
  fi
}

# ensure_binding ROLE MEMBER 'COMMAND GROUP' RESOURCE [FLAGS...]: grant ROLE on that resource.
ensure_binding() {
  local role=$1 member=$2 policy
  local -a group
  read -ra group <<<"$3"
  policy=$(query "${group[@]}" get-iam-policy "${@:4}" --flatten='bindings[].members' \
    --format='value(bindings.role,bindings.members)') || policy=''
  if grep -Fxq -- "$role"$'\t'"$member" <<<"$policy"; then
    say "      $role for ${member#*:} on $4: already granted"
  else
    mutate_retrying "${group[@]}" add-iam-policy-binding "${@:4}" --member="$member" --role="$role"
  fi
}

step_runtime_identity() {
  step 2/10 "Bucket gs://$GCS_BUCKET"
  exists_or_create bucket "storage buckets describe gs://$GCS_BUCKET --format=value(name)" \
    storage buckets create "gs://$GCS_BUCKET" --location="$REGION" \
    --uniform-bucket-level-access --public-access-prevention --default-storage-class=STANDARD
  step 3/10 "Runtime service account $SA_EMAIL"
  exists_or_create "service account" "iam service-accounts describe $SA_EMAIL --format=value(email)" \
    iam service-accounts create "$SA_ID" --display-name="Harness audit collector ($FUNCTION_NAME)" \
    --description="Runs Cloud Run function $FUNCTION_NAME: writes gs://$GCS_BUCKET"
  ensure_binding "$RUNTIME_BUCKET_ROLE" "$SA_MEMBER" "storage buckets" "gs://$GCS_BUCKET"
}

# newest_version [FLAGS...]: the number of the secret's newest version (of those FLAGS keep).
newest_version() {
  local name
  name=$(query secrets versions list "$SECRET_PATH" "$@" --sort-by=~createTime --limit=1 \
    --format='value(name)') || name=''
  name=${name##*/}
  [[ $name =~ ^[0-9]+$ ]] && printf '%s' "$name"
}

# The function mounts the key by version number, not "latest" (resolved only when an instance
# starts): a new key changes the deploy's arguments, hence its fingerprint, hence one redeploy.
# A dry run that adds a version pins the number Secret Manager gives it: the next, from 1.
# pin_key_version ADDED: ADDED is 1 when the key step added a version.
pin_key_version() {
  local newest
  if ((DRY_RUN && $1)); then
    newest=$(newest_version) || newest=0
    KEY_VERSION=$((newest + 1))
    say "      the function will mount the key's new version $KEY_VERSION"
  else
    KEY_VERSION=$(newest_version --filter=state:ENABLED) ||
      die "secret $SECRET_NAME holds no enabled version to mount: run deploy.sh again with" \
        "HARNESS_API_KEY set"
    say "      the function mounts version $KEY_VERSION of the key"
  fi
}

step_secret() {
  step 4/10 "Secret $SECRET_NAME"
  local current='' added=0
  if query secrets describe "$SECRET_PATH" --format='value(name)' >/dev/null; then
    say "      secret exists"
    # The stored key, compared in this shell and dropped, never printed.
    [[ $KEY_SOURCE != environment ]] ||
      current=$(query secrets versions access "$SECRET_PATH/versions/latest") || current=''
  else
    mutate secrets create "$SECRET_PATH" --replication-policy=automatic
  fi
  if [[ $KEY_SOURCE == stored ]]; then
    say "      HARNESS_API_KEY not set: the stored key is kept"
  elif [[ $KEY_SOURCE == environment && -n $current && $current == "$API_KEY" ]]; then
    say "      the latest version already holds this HARNESS_API_KEY"
  else
    [[ $KEY_SOURCE != terminal ]] || ((!DRY_RUN)) ||
      say "      no key stored and HARNESS_API_KEY not set: a real run asks on the terminal"
    mutate --key secrets versions add "$SECRET_PATH" --data-file=-
    added=1
  fi
  pin_key_version "$added"
  ensure_binding "$SECRET_ROLE" "$SA_MEMBER" "secrets" "$SECRET_PATH"
  step 5/10 "Pub/Sub topic $TOPIC_NAME"
  exists_or_create topic "pubsub topics describe $TOPIC_PATH --format=value(name)" \
    pubsub topics create "$TOPIC_PATH"
  # For the continuation it publishes to its own trigger topic.
  ensure_binding "$PUBLISHER_ROLE" "$SA_MEMBER" "pubsub topics" "$TOPIC_PATH"
}

# The function's environment: each of its settings that is set, as single-quoted YAML (every
# character literal but ', written twice); commas (FILTER_MODULES=CD,CI) rule out
# --set-env-vars. The upload: exactly main.py, requirements.txt and the package's .py files,
# copied into a directory of their own, so that nothing else beside them is ever uploaded.
stage_function() {
  local name value path squote="''"
  rm -rf -- "$SOURCE_DIR"
  mkdir -p -- "$SOURCE_DIR/$SOURCE_PACKAGE"
  : >"$ENV_FILE"
  for name in "${SETTING_NAMES[@]}" MALLOC_MMAP_THRESHOLD_; do
    value=${!name-}
    [[ -z $value ]] || printf "%s: '%s'\n" "$name" "${value//\'/$squote}" >>"$ENV_FILE"
  done
  for path in "${SOURCE_FILES[@]}"; do
    cp -- "$SCRIPT_DIR/$path" "$SOURCE_DIR/$path"
  done
  (cd -- "$SCRIPT_DIR" && find "$SOURCE_PACKAGE" -type f -name '*.py' ! -path '*/__pycache__/*') |
    while IFS= read -r path; do
      mkdir -p -- "$SOURCE_DIR/${path%/*}"
      cp -- "$SCRIPT_DIR/$path" "$SOURCE_DIR/$path"
    done
}

step_function() {
  step 6/10 "Function $FUNCTION_NAME ($FUNCTION_RUNTIME, gen2, region $REGION)"
  ENV_FILE=$DEPLOY_DIR/function-env.yaml SOURCE_DIR=$DEPLOY_DIR/source
  stage_function
  # No --retry by default: the next scheduled run is the retry, and the checkpoint makes it
  # lossless. --trigger-topic is the one topic argument gcloud wants short.
  local -a deploy_args=(
    functions deploy "$FUNCTION_NAME" --gen2 --region="$REGION" --runtime="$FUNCTION_RUNTIME"
    --entry-point=main --trigger-topic="$TOPIC_NAME"
    --service-account="$SA_EMAIL" --trigger-service-account="$SA_EMAIL"
    --set-secrets="HARNESS_API_KEY=${SECRET_PATH}:${KEY_VERSION}"
    --timeout="${FUNCTION_TIMEOUT_SECONDS}s" --memory="$FUNCTION_MEMORY" --max-instances=1
    --cpu="$FUNCTION_CPU" --concurrency="$FUNCTION_CONCURRENCY"
  )
  [[ $RETRY_ON_FAILURE != true ]] || deploy_args+=(--retry)
  # A label holds a fingerprint of what is uploaded and of this exact configuration: a re-run
  # redeploys only when one of them changed, or the last deploy did not end ACTIVE.
  local fingerprint current state label line reason=''
  fingerprint=$({
    (cd -- "$SOURCE_DIR" && find . -type f | LC_ALL=C sort | while IFS= read -r line; do
      printf '%s %s\n' "$(sha256 <"$line")" "${line#./}"
    done)
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
  else
    say "      $reason; environment passed to the function:"
    while IFS= read -r line; do say "        $line"; done <"$ENV_FILE"
    mutate "${deploy_args[@]}" --source="$SOURCE_DIR" --env-vars-file="$ENV_FILE" \
      --update-labels="deploy_hash=$fingerprint"
  fi
  # The Pub/Sub trigger calls the function as the runtime service account.
  ensure_binding "$INVOKER_ROLE" "$SA_MEMBER" "run services" "$FUNCTION_NAME" --region="$REGION"
}

step_scheduler() {
  step 7/10 "Scheduler jobs $JOB_NAME ('$SCHEDULE') and $VERIFY_JOB_NAME ('$VERIFY_SCHEDULE'), $TIME_ZONE"
  ensure_job "$JOB_NAME" "$SCHEDULE" "" "Triggers $FUNCTION_NAME: publishes {} to $TOPIC_NAME"
  ensure_job "$VERIFY_JOB_NAME" "$VERIFY_SCHEDULE" command=verify \
    "Verifies the last settled day of $FUNCTION_NAME against Harness: command=verify to $TOPIC_NAME"
}

# ensure_job NAME SCHEDULE ATTRIBUTE DESCRIPTION: a job publishing {} (with ATTRIBUTE, KEY=VALUE,
# when given) to the function's topic.
ensure_job() {
  local current want=$2$'\t'$TIME_ZONE$'\t'$TOPIC_PATH${3:+$'\t'$3}
  current=$(query scheduler jobs describe "$1" --location="$REGION" \
    --format="value(schedule,timeZone,pubsubTarget.topicName${3:+,pubsubTarget.attributes})") ||
    current=''
  local -a job_args=(--location="$REGION" --schedule="$2" --time-zone="$TIME_ZONE"
    --topic="$TOPIC_PATH" --message-body='{}')
  if [[ -z $current ]]; then
    mutate scheduler jobs create pubsub "$1" "${job_args[@]}" ${3:+"--attributes=$3"} \
      --description="$4"
  elif [[ $current != "$want" ]]; then
    say "      $1 exists as '${current//$'\t'/ }': updating"
    mutate scheduler jobs update pubsub "$1" "${job_args[@]}" ${3:+"--update-attributes=$3"}
  else
    say "      $1 exists, schedule unchanged"
  fi
}

# The longest time between two runs, by a rule: "*/N * * * *" every N minutes; any other
# schedule with hour, day, month and weekday "*" at most an hour; "M */H * * *" H hours;
# anything else counts as daily or rarer.
schedule_interval_minutes() {
  local -a fields
  read -ra fields <<<"$SCHEDULE"
  case "${fields[*]:1}" in
    '* * * *') if [[ ${fields[0]} =~ ^\*/([0-9]+)$ ]]; then echo "$((10#${BASH_REMATCH[1]}))"; else echo 60; fi ;;
    '*/'[0-9]*' * * *') echo "$((10#${fields[1]#*/} * 60))" ;;
    *) echo 1440 ;;
  esac
}

# The alert's numbers, for the templates. Cloud Monitoring's windows are 23.5 h at most; when
# two runs lie further apart there is no absence condition, and one failure alerts.
alert_numbers() {
  local interval max=1410 minutes
  local -a bounds
  interval=$(schedule_interval_minutes)
  ALERT_LAG_MINUTES=${SETTING[ALERT_LAG_MINUTES]} ALERT_LAG_SECONDS=$((SETTING[ALERT_LAG_MINUTES] * 60))
  LAG_WINDOW_SECONDS=$((interval < max ? interval * 60 : max * 60))
  TWO_INTERVALS_MINUTES=$((2 * interval < max ? 2 * interval : max))
  TWO_INTERVALS_SECONDS=$((TWO_INTERVALS_MINUTES * 60))
  FAILURES_THRESHOLD=$((2 * interval <= max)) ABSENCE_CONDITION='' VERIFY_ABSENCE=''
  if ((FAILURES_THRESHOLD)); then ABSENCE_CONDITION=$'\n'$(fill condition-absent.json); fi
  # Two days: 23.5 h with no summary in a 23.5 h window. Only for a verify run every day.
  [[ $VERIFY_SCHEDULE != *' * * *' ]] || VERIFY_ABSENCE=$(fill condition-verify-absent.json)
  CHANNELS=${NOTIFICATION_CHANNEL:+\"$NOTIFICATION_CHANNEL\"}
  # The threshold is a bucket bound, so that the 99th percentile Monitoring interpolates lies
  # above it exactly when a run's lag does.
  mapfile -t bounds < <(for minutes in 1 2 5 10 15 30 45 60 90 120 180 240 360 480 720 1080 \
    1440 2160 2880 4320 7200 10080 20160 "$ALERT_LAG_MINUTES"; do
    printf '%d\n' "$((minutes * 60))"
  done | sort -n -u)
  printf -v LAG_BOUNDS '%s, ' "${bounds[@]}"
  LAG_BOUNDS=${LAG_BOUNDS%, }
}

# ensure_config WHAT NAME FILE TEMPLATE CURRENT 'CREATE ARGS' 'UPDATE ARGS': the object is
# current when CURRENT ends with the fingerprint of the filled template.
ensure_config() {
  local fingerprint
  fingerprint=$(write_fingerprinted "$3" "$4")
  # shellcheck disable=SC2086 # the command's words, split on purpose
  if [[ -z $5 ]]; then
    mutate $6"$3"
  elif [[ $5 != *"$fingerprint" && $5 != *"$fingerprint]" ]]; then
    mutate $7"$3"
  else
    say "      $1 $2: exists, current"
  fi
}

# The log-based metrics, from fields of the summary lines: "NAME TEMPLATE FIELD VALUE", a count
# of the lines whose FIELD is VALUE (metric-counter), or the distribution of FIELD's values.
metric_table() {
  printf '%s\n' "$METRIC_OK metric-counter.json outcome ok" \
    "$METRIC_FAILED metric-counter.json outcome failed" "$METRIC_LAG metric-lag.json lag_seconds -" \
    "${FUNCTION_NAME}_continuations metric-counter.json continuation published" \
    "${FUNCTION_NAME}_verify_failed metric-counter.json outcome verify_failed" \
    "${FUNCTION_NAME}_events_written metric-value.json events_written -" \
    "${FUNCTION_NAME}_verify_missing metric-value.json verify_missing -" \
    "${FUNCTION_NAME}_verify_repaired metric-value.json verify_repaired -"
}

step_alerting() {
  step 8/10 "Alerting: log-based metrics, an alert policy and a dashboard"
  local name template FIELD VALUE current row
  local -a rows
  alert_numbers
  mapfile -t rows < <(metric_table)
  for row in "${rows[@]}"; do
    read -r name template FIELD VALUE <<<"$row"
    current=$(query logging metrics describe "$name" --format='value(description)') || current=''
    ensure_config metric "$name" "$DEPLOY_DIR/metric-$name.json" "$template" "$current" \
      "logging metrics create $name --config-from-file=" \
      "logging metrics update $name --config-from-file="
  done
  current=$(query alpha monitoring policies list --format='value(name,userLabels.deploy_hash)' \
    --filter="userLabels.$POLICY_LABEL=$FUNCTION_NAME" | sed -n 1p) || current=''
  ensure_config policy "${current%%$'\t'*}" "$DEPLOY_DIR/alert-policy.json" alert-policy.json \
    "$current" "alpha monitoring policies create --policy-from-file=" \
    "alpha monitoring policies update ${current%%$'\t'*} --policy-from-file="
  say "      alerts on a lag over $ALERT_LAG_MINUTES min, on $((FAILURES_THRESHOLD + 1)) failed" \
    "run(s) within $TWO_INTERVALS_MINUTES min, ${ABSENCE_CONDITION:+and on no successful run}"
  say "      and on a verify that finds events missing or fails${VERIFY_ABSENCE:+, or none for two days}"
  current=$(query monitoring dashboards list --format='value(name,labels.deploy_hash)' \
    --filter="labels.$POLICY_LABEL=$FUNCTION_NAME" | sed -n 1p) || current=''
  ensure_config dashboard "${current%%$'\t'*}" "$DEPLOY_DIR/dashboard.json" dashboard.json \
    "$current" "monitoring dashboards create --config-from-file=" \
    "monitoring dashboards update ${current%%$'\t'*} --config-from-file="
  [[ -n $ABSENCE_CONDITION ]] ||
    say "      (runs lie further apart than Cloud Monitoring waits: a schedule that stops is not noticed)"
  [[ -z $NOTIFICATION_CHANNEL ]] || say "      notifies $NOTIFICATION_CHANNEL"
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
  step 9/10 "Google SecOps feed"
  local role
  if [[ -n ${SECOPS_INSTANCE-} ]]; then
    feed_account_and_plan ensure # sets SECOPS_SERVICE_ACCOUNT
  elif [[ -z $SECOPS_SERVICE_ACCOUNT ]]; then
    say "      SECOPS_SERVICE_ACCOUNT not set: no access granted. In SecOps, Add New Feed >"
    say "      Get Service Account, then run again with SECOPS_SERVICE_ACCOUNT=<that email>."
  fi
  for role in ${SECOPS_SERVICE_ACCOUNT:+"${SECOPS_BUCKET_ROLES[@]}"}; do
    ensure_binding "$role" "serviceAccount:$SECOPS_SERVICE_ACCOUNT" "storage buckets" \
      "gs://$GCS_BUCKET"
  done
  if [[ -z ${SECOPS_INSTANCE-} ]]; then
    print_feed_settings
  elif grep -q '^would' <<<"$FEED_PLAN"; then
    feed_change ensure
  else
    say "      feed $FUNCTION_NAME is current"
  fi
}

# python -m harness_audit from the repository's .venv, with the function's settings; a key
# reaches it through its environment, never an argument.
operator_cli() {
  local python=${HARNESS_AUDIT_PYTHON:-$SCRIPT_DIR/.venv/bin/python}
  [[ -x $python ]] || die_usage "$python not found: run 'make .venv/.installed' first"
  (cd -- "$SCRIPT_DIR" && GCS_BUCKET=$GCS_BUCKET PROJECT_ID=$PROJECT_ID \
    HARNESS_ACCOUNT_ID=$HARNESS_ACCOUNT_ID FUNCTION_NAME=$FUNCTION_NAME "$python" -m harness_audit "$@")
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
  CHANGES=$((CHANGES + 1))
  printf '%s%s\n' "$( ((DRY_RUN)) || printf '+ ')" "$(quoted .venv/bin/python -m harness_audit feed "$1")"
  if ((!DRY_RUN)); then
    confirm_first_change
    operator_cli feed "$1" | sed 's/^/      /' || die "the SecOps feed change above failed"
  fi
}

print_summary() {
  step 10/10 "Project $PROJECT_ID, region $REGION"
  if ((DRY_RUN)); then
    say "Dry run: $CHANGES command(s) above would change something; nothing was changed."
    return 0
  fi
  if ((CHANGES)); then say "Done: $CHANGES change(s) made."; else say "Nothing changed."; fi
  say "Force a run now:"
  say "  gcloud scheduler jobs run $JOB_NAME --location=$REGION --project=$PROJECT_ID"
  say "Verify the last settled day now (and repair it; VERIFY_REPAIR=false only reports):"
  say "  gcloud scheduler jobs run $VERIFY_JOB_NAME --location=$REGION --project=$PROJECT_ID"
  say "Read the function's logs:"
  say "  gcloud functions logs read $FUNCTION_NAME --gen2 --region=$REGION" \
    "--project=$PROJECT_ID --limit=50"
  if [[ -z $NOTIFICATION_CHANNEL ]]; then
    say "The alert policy notifies no one yet. List the project's notification channels:"
    say "  gcloud beta monitoring channels list --project=$PROJECT_ID" \
      "--format='value(name,displayName)'"
    say "then run deploy.sh again with NOTIFICATION_CHANNEL=projects/$PROJECT_ID/notificationChannels/ID."
  fi
}

deploy() {
  resolve_api_key
  preflight_harness
  step_apis; step_runtime_identity; step_secret; step_function; step_scheduler
  step_alerting; step_secops; print_summary
}

# --- destroy ----------------------------------------------------------------------------------

# What --destroy removes, in this order (the trigger first, then what it calls; bindings before
# the account they name): "WHAT|READ-ONLY QUERY|LINE IT MUST PRINT (or any)|DELETE", where {}
# stands for the query's first word.
destroy_table() {
  local item role tab=$'\t'
  local -a members=("$RUNTIME_BUCKET_ROLE $SA_MEMBER")
  for role in ${SECOPS_SERVICE_ACCOUNT:+"${SECOPS_BUCKET_ROLES[@]}"}; do
    members+=("$role serviceAccount:$SECOPS_SERVICE_ACCOUNT")
  done
  printf '%s\n' \
    "scheduler job $JOB_NAME|scheduler jobs describe $JOB_NAME --location=$REGION --format=value(name)||scheduler jobs delete $JOB_NAME --location=$REGION" \
    "scheduler job $VERIFY_JOB_NAME|scheduler jobs describe $VERIFY_JOB_NAME --location=$REGION --format=value(name)||scheduler jobs delete $VERIFY_JOB_NAME --location=$REGION" \
    "function $FUNCTION_NAME (with its Cloud Run service and Eventarc trigger)|functions describe $FUNCTION_NAME --gen2 --region=$REGION --format=value(name)||functions delete $FUNCTION_NAME --gen2 --region=$REGION" \
    "alert policy {}|alpha monitoring policies list --filter=userLabels.$POLICY_LABEL=$FUNCTION_NAME --format=value(name)||alpha monitoring policies delete {}" \
    "dashboard {}|monitoring dashboards list --filter=labels.$POLICY_LABEL=$FUNCTION_NAME --format=value(name)||monitoring dashboards delete {}"
  for item in $(metric_table | cut -d' ' -f1); do
    printf '%s\n' "log-based metric $item|logging metrics describe $item --format=value(name)||logging metrics delete $item"
  done
  printf '%s\n' \
    "topic $TOPIC_NAME (with its role bindings)|pubsub topics describe $TOPIC_PATH --format=value(name)||pubsub topics delete $TOPIC_PATH" \
    "secret $SECRET_NAME and every version of the key|secrets describe $SECRET_PATH --format=value(name)||secrets delete $SECRET_PATH"
  for item in "${members[@]}"; do
    printf '%s\n' "${item% *} for ${item#*:} on gs://$GCS_BUCKET|storage buckets get-iam-policy gs://$GCS_BUCKET --flatten=bindings[].members --format=value(bindings.role,bindings.members)|${item% *}$tab${item#* }|storage buckets remove-iam-policy-binding gs://$GCS_BUCKET --member=${item#* } --role=${item% *}"
  done
  printf '%s\n' "service account $SA_EMAIL|iam service-accounts describe $SA_EMAIL --format=value(email)||iam service-accounts delete $SA_EMAIL"
}

destroy() {
  local - what look expect delete output item
  local -a found=() deletes=()
  set -f # the table's words are split, never globbed
  if [[ -n ${SECOPS_INSTANCE-} ]]; then # its account's bindings join the table
    feed_account_and_plan destroy >/dev/null
    grep -q '^would delete' <<<"$FEED_PLAN" && found+=("SecOps feed named $FUNCTION_NAME")
  fi
  while IFS='|' read -r what look expect delete; do
    # shellcheck disable=SC2086
    output=$(query $look) && [[ -n $output ]] || continue
    [[ -z $expect ]] || grep -Fxq -- "$expect" <<<"$output" || continue
    found+=("${what//\{\}/${output%%[[:space:]]*}}")
    deletes+=("${delete//\{\}/${output%%[[:space:]]*}}")
  done < <(destroy_table)
  say ""
  say "Kept: gs://$GCS_BUCKET and every object in it (logs and checkpoint), and the enabled APIs."
  [[ -n $SECOPS_SERVICE_ACCOUNT ]] ||
    say "(SECOPS_SERVICE_ACCOUNT not set: any access granted to the feed stays.)"
  if ((${#found[@]} == 0)); then
    say "Nothing to remove: none of what deploy.sh creates exists in project $PROJECT_ID."
    return 0
  fi
  say "To remove from project $PROJECT_ID:"
  for item in "${found[@]}"; do say "  - $item"; done
  if ((!DRY_RUN && !ASSUME_YES)); then
    ask "Remove these ${#found[@]} item(s) from project $PROJECT_ID?" ||
      die "stopped at your answer: nothing was removed"
  fi
  CONFIRMED=1
  say ""
  if grep -q '^would delete' <<<"${FEED_PLAN-}"; then feed_change destroy; fi
  for item in "${deletes[@]}"; do
    # shellcheck disable=SC2086
    mutate $item
  done
  say ""
  if ((DRY_RUN)); then
    say "Dry run: $CHANGES command(s) above would remove something; nothing was changed."
  else
    say "Removed ${#found[@]} item(s). gs://$GCS_BUCKET and its objects are untouched."
  fi
}

main() {
  parse_args "$@"
  apply_defaults
  check_inputs
  check_gcloud
  local mode=deploy
  ((!DESTROY)) || mode=destroy
  ((!DRY_RUN)) || mode+=" (dry run: read-only commands only, changes are printed)"
  say "Harness audit collector: $mode"
  say "  project   $PROJECT_ID (as $ACCOUNT)"
  say "  bucket    gs://$GCS_BUCKET, region $REGION"
  say "  function  $FUNCTION_NAME; topic $TOPIC_NAME; job $JOB_NAME; secret $SECRET_NAME"
  say "  runtime   $SA_EMAIL"
  if ((DESTROY)); then destroy; else deploy; fi
}

main "$@"
