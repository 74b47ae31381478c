{{/*
Chart name, truncated to the 63 characters a label value may hold.
*/}}
{{- define "drawbridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release-chart, unless the release name already contains the chart name.
*/}}
{{- define "drawbridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "drawbridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "drawbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "drawbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "drawbridge.labels" -}}
helm.sh/chart: {{ include "drawbridge.chart" . }}
{{ include "drawbridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ ternary "gateway" "sidecar" (eq .Values.mode "edge") }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "drawbridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "drawbridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "drawbridge.image" -}}
{{- $tag := default .Chart.AppVersion (toString .Values.image.tag) }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "drawbridge.syncServerImage" -}}
{{- $img := .Values.sidecar.syncServer.image }}
{{- if $img.tag }}
{{- printf "%s:%s" $img.repository (toString $img.tag) }}
{{- else }}
{{- $img.repository }}
{{- end }}
{{- end }}

{{/* Name of the kubernetes.io/tls secret mounted at /etc/drawbridge/tls. */}}
{{- define "drawbridge.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "drawbridge.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{/* Name of the secret mounted at /etc/drawbridge/secrets; empty when there is none. */}}
{{- define "drawbridge.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if .Values.secrets.files }}
{{- printf "%s-secrets" (include "drawbridge.fullname" .) }}
{{- end }}
{{- end }}

{{/* "true" when mutual TLS is on. */}}
{{- define "drawbridge.mtls" -}}
{{- if and (not .Values.plaintext) .Values.tls.clientCA.existingSecret }}true{{ end }}
{{- end }}

{{- define "drawbridge.upstreamURL" -}}
{{- if eq .Values.mode "sidecar" }}
{{- printf "http://127.0.0.1:%d" (int .Values.sidecar.syncServer.port) }}
{{- else }}
{{- .Values.config.upstream.url }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the session signing key, and the key in it. */}}
{{- define "drawbridge.sessionKeyRef" -}}
{{- $session := .Values.session | default dict }}
{{- if $session.keySecret }}
{{- $session.keySecret | toJson }}
{{- else }}
{{- dict "secretName" (printf "%s-session" (include "drawbridge.fullname" .)) "key" "session.key" | toJson }}
{{- end }}
{{- end }}

{{/*
A new session signing key for session.algorithm `.`: an Ed25519 PKCS#8 PEM
(what `drawbridge keygen` writes), or a 64-character secret for HS256.
*/}}
{{- define "drawbridge.newSessionKey" -}}
{{- if eq . "HS256" }}
{{- randAlphaNum 64 }}
{{- else if or (eq . "") (eq . "EdDSA") }}
{{- genPrivateKey "ed25519" }}
{{- else }}
{{- fail (printf "session.algorithm %s: the chart generates only EdDSA and HS256 keys; make one with `drawbridge keygen --algorithm %s` and name it in session.keySecret" . .) }}
{{- end }}
{{- end }}

{{/*
drawbridge.toml.
Helm reads numbers from YAML as float64 (10485760 would print as
1.048576e+07), so every whole number goes through `int64`; every string goes
through `toJson`, whose escapes are all valid in a TOML basic string.
*/}}
{{- define "drawbridge.config" -}}
{{- $body := include "drawbridge.configBody" . }}
{{- $body }}
{{- with .Values.extraConfig }}
{{- include "drawbridge.checkExtraConfig" (dict "body" $body "extra" .) }}

# --- extraConfig ---
{{ . }}
{{- end }}
{{- end }}

{{/* drawbridge.toml without extraConfig. */}}
{{- define "drawbridge.configBody" -}}
{{- $c := .Values.config -}}
# drawbridge.toml rendered by the drawbridge Helm chart ({{ include "drawbridge.chart" . }}).
# Change it through the chart values, not here.

[listen]
addr = {{ printf "%s:%d" .Values.bindAddress (int64 .Values.ports.gateway) | toJson }}
plaintext = {{ .Values.plaintext }}
{{- include "drawbridge.plainKeys" (dict "values" ($c.listen | default dict)) }}
{{- if not .Values.plaintext }}

[tls]
cert_file = "/etc/drawbridge/tls/tls.crt"
key_file = "/etc/drawbridge/tls/tls.key"
{{- if include "drawbridge.mtls" . }}
client_ca_file = "/etc/drawbridge/client-ca/ca.crt"
{{- end }}
{{- end }}

[admin]
addr = {{ printf "%s:%d" .Values.bindAddress (int64 .Values.ports.admin) | toJson }}

[upstream]
url = {{ include "drawbridge.upstreamURL" . | toJson }}
{{- include "drawbridge.plainKeys" (dict "values" (omit $c.upstream "url")) }}
{{- range $section, $values := omit $c "listen" "tls" "admin" "upstream" }}
{{- if $values }}

[{{ $section }}]
{{- include "drawbridge.plainKeys" (dict "values" $values) }}
{{- end }}
{{- end }}
{{- include "drawbridge.authConfig" . }}
{{- include "drawbridge.clusterConfig" . }}
{{- end }}

{{/*
`key = value` lines of a `config` section: the keys as they are in
drawbridge.toml, unset (null) keys left out, and a {secretName, key} value
read from that Secret's file.
*/}}
{{- define "drawbridge.plainKeys" -}}
{{- range $k, $v := .values }}
{{- if kindIs "map" $v }}
{{ $k }} = {{ include "drawbridge.secretFile" $v | toJson }}
{{- else if not (kindIs "invalid" $v) }}
{{ $k }} = {{ include "drawbridge.tomlValue" $v }}
{{- end }}
{{- end }}
{{- end }}

{{- define "drawbridge.clusterConfig" -}}
{{- with .Values.cluster }}
{{- if .enabled }}

[cluster]
{{- $r := .redis }}
{{- $chosen := 0 }}
{{- if $r.url }}{{ $chosen = add1 $chosen }}{{ end }}
{{- if $r.sentinels }}{{ $chosen = add1 $chosen }}{{ end }}
{{- if $r.clusterNodes }}{{ $chosen = add1 $chosen }}{{ end }}
{{- if ne (int $chosen) 1 }}
{{- fail "cluster.enabled needs exactly one of cluster.redis.url (one Redis), cluster.redis.sentinels (with cluster.redis.sentinelMaster) or cluster.redis.clusterNodes (Redis Cluster)" }}
{{- end }}
{{- if $r.url }}
redis_url = {{ $r.url | toJson }}
{{- else if $r.sentinels }}
sentinels = {{ $r.sentinels | toJson }}
sentinel_master = {{ required "cluster.redis.sentinelMaster is required with cluster.redis.sentinels" $r.sentinelMaster | toJson }}
{{- with $r.sentinelUsername }}
sentinel_username = {{ toJson . }}
{{- end }}
{{- if $r.sentinelExistingSecret }}
sentinel_password = "${file:/etc/drawbridge/cluster-sentinel/password}"
{{- end }}
{{- with $r.tlsServerName }}
tls_server_name = {{ toJson . }}
{{- end }}
{{- else }}
cluster_nodes = {{ $r.clusterNodes | toJson }}
{{- end }}
{{- if .redis.existingSecret }}
password = "${file:/etc/drawbridge/cluster/password}"
{{- end }}
{{- with .redis.username }}
username = {{ toJson . }}
{{- end }}
key_prefix = {{ toJson .keyPrefix }}
connect_timeout_ms = {{ int64 .connectTimeoutMs }}
command_timeout_ms = {{ int64 .commandTimeoutMs }}
resync_interval_ms = {{ int64 .resyncIntervalMs }}
required = {{ .required }}
shared_decisions = {{ .sharedDecisions }}
{{- end }}
{{- end }}
{{- end }}

{{/*
extraConfig is appended as it is, so it may only open tables the chart does
not render: a repeated table is invalid TOML, which `helm template` would not
notice and drawbridge would refuse (new pods exit 64, running pods refuse the
reload). Fail the render instead, naming the table and the values to use.
*/}}
{{- define "drawbridge.checkExtraConfig" -}}
{{- $rendered := list }}
{{- range regexFindAll "(?m)^\\[[^\\]]+\\]" .body -1 }}
{{- $rendered = append $rendered (. | trimPrefix "[" | trimSuffix "]" | replace "\"" "" | replace " " "") }}
{{- end }}
{{- $first := true }}
{{- range regexSplit "\n" .extra -1 }}
{{- $line := trim . }}
{{- if and $line (not (hasPrefix "#" $line)) }}
{{- if hasPrefix "[" $line }}
{{- $first = false }}
{{- $table := regexReplaceAll "^\\[\\[?([^\\]]*)\\]\\]?.*$" $line "${1}" | replace "\"" "" | replace "'" "" | replace " " "" }}
{{- if has $table $rendered }}
{{- $root := first (splitList "." $table) }}
{{- $hint := get (dict "session" "session.*" "cluster" "cluster.*" "cache" "cache.*" "ditto" "ditto.*" "forward_auth" "forwardAuth.*" "native" "native.*" "providers" "providers.<name>.*" "apps" "apps.<appID>.*" "tls" "tls.*" "admin" "ports.admin") $root | default (printf "config.%s.<key>" $root) }}
{{- fail (printf "extraConfig repeats [%s], a table the chart already renders (drawbridge would refuse the file): set it through the values %s instead and remove it from extraConfig" $table $hint) }}
{{- end }}
{{- else if $first }}
{{- fail (printf "extraConfig must start with a [table] header: its first line %q would land in the last table the chart renders" $line) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}


{{/*
Cross-field checks the schema cannot express. Included once, from the
Deployment, so every render runs them.
*/}}
{{- define "drawbridge.validate" -}}
{{- $grace := int64 .Values.config.shutdown.grace_seconds }}
{{- $sleep := int64 .Values.preStopSleepSeconds }}
{{- $term := int64 .Values.terminationGracePeriodSeconds }}
{{- if le $term (add $grace $sleep) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than preStopSleepSeconds (%d) + config.shutdown.grace_seconds (%d), or the kubelet kills drawbridge in the middle of its drain" $term $sleep $grace) }}
{{- end }}
{{- if and .Values.secrets.existingSecret .Values.secrets.files }}
{{- fail "set secrets.existingSecret or secrets.files, not both" }}
{{- end }}
{{- if and .Values.plaintext .Values.tls.clientCA.existingSecret }}
{{- fail "tls.clientCA (mutual TLS) needs TLS: unset plaintext or tls.clientCA.existingSecret" }}
{{- end }}
{{- if eq (int64 .Values.ports.gateway) (int64 .Values.ports.admin) }}
{{- fail "ports.gateway and ports.admin must differ" }}
{{- end }}
{{- if eq .Values.mode "sidecar" }}
{{- if not .Values.sidecar.syncServer.image.repository }}
{{- fail "mode: sidecar needs sidecar.syncServer.image.repository (the sync server image)" }}
{{- end }}
{{- $sync := int64 .Values.sidecar.syncServer.port }}
{{- if or (eq $sync (int64 .Values.ports.gateway)) (eq $sync (int64 .Values.ports.admin)) }}
{{- fail (printf "sidecar.syncServer.port (%d) collides with a drawbridge port (ports.gateway/ports.admin)" $sync) }}
{{- end }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (eq (toString .Values.podDisruptionBudget.maxUnavailable) "") (eq (toString .Values.podDisruptionBudget.minAvailable) "") }}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (ne (toString .Values.podDisruptionBudget.maxUnavailable) "") (ne (toString .Values.podDisruptionBudget.minAvailable) "") }}
{{- fail "podDisruptionBudget: set only one of maxUnavailable and minAvailable" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (eq .Values.mode "sidecar") }}
{{- $req := default dict .Values.sidecar.syncServer.resources.requests }}
{{- if and (gt (int64 .Values.autoscaling.targetCPUUtilizationPercentage) 0) (not (hasKey $req "cpu")) }}
{{- fail "autoscaling on CPU in sidecar mode needs sidecar.syncServer.resources.requests.cpu: without a request on every container the HPA cannot compute the pod's utilization" }}
{{- end }}
{{- if and (gt (int64 .Values.autoscaling.targetMemoryUtilizationPercentage) 0) (not (hasKey $req "memory")) }}
{{- fail "autoscaling on memory in sidecar mode needs sidecar.syncServer.resources.requests.memory" }}
{{- end }}
{{- end }}
{{- if and (not .Values.cluster.enabled) (or .Values.autoscaling.enabled (gt (int64 .Values.replicaCount) 1)) }}
{{- fail (printf "%s without cluster mode: each pod would keep its own revocations and tickets, so a logout on one pod would leave the session alive on the others. Set cluster.enabled=true and cluster.redis.url (a Redis every pod reaches), or replicaCount=1 without autoscaling" (ternary "autoscaling.enabled" (printf "replicaCount %d" (int64 .Values.replicaCount)) .Values.autoscaling.enabled)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int64 .Values.autoscaling.minReplicas) (int64 .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}
