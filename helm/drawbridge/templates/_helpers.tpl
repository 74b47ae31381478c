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

{{/*
drawbridge.toml.
Helm reads numbers from YAML as float64 (10485760 would print as
1.048576e+07), so every integer goes through `int64`; every string goes
through `toJson`, whose escapes are all valid in a TOML basic string.
*/}}
{{- define "drawbridge.config" -}}
{{- $c := .Values.config -}}
# drawbridge.toml rendered by the drawbridge Helm chart ({{ include "drawbridge.chart" . }}).
# Change it through the chart values, not here.

[listen]
addr = {{ printf "%s:%d" .Values.bindAddress (int64 .Values.ports.gateway) | toJson }}
plaintext = {{ .Values.plaintext }}
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
public_upgrade_paths = {{ $c.upstream.public_upgrade_paths | default list | toJson }}
{{- with $c.upstream.sync_paths }}
sync_paths = {{ . | toJson }}
{{- end }}
connect_timeout_ms = {{ int64 $c.upstream.connect_timeout_ms }}
request_timeout_ms = {{ int64 $c.upstream.request_timeout_ms }}

[limits]
max_connections = {{ int64 $c.limits.max_connections }}
header_read_timeout_ms = {{ int64 $c.limits.header_read_timeout_ms }}
tls_handshake_timeout_ms = {{ int64 $c.limits.tls_handshake_timeout_ms }}
max_request_body_bytes = {{ int64 $c.limits.max_request_body_bytes }}

[shutdown]
grace_seconds = {{ int64 $c.shutdown.grace_seconds }}

[log]
format = {{ $c.log.format | toJson }}
level = {{ $c.log.level | toJson }}
{{- include "drawbridge.authConfig" . }}
{{- with .Values.extraConfig }}

# --- extraConfig ---
{{ . }}
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
{{- if and .Values.autoscaling.enabled (gt (int64 .Values.autoscaling.minReplicas) (int64 .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}
