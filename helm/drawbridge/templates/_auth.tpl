{{/*
The auth sections of drawbridge.toml, from the values providers, groups, apps,
session, cache, ditto, forwardAuth and native. A section is rendered only when
its value sets something, so drawbridge's own defaults apply otherwise. Keys
are the TOML keys in camelCase (timeoutMs -> timeout_ms); integers are
rendered as integers, never as floats.

Secrets are referenced by the name of an existing Secret and a key in it:
{secretName, key}. Every Secret so named is mounted as a directory at
/etc/drawbridge/auth/<secretName> and the config reads the key through
${file:/etc/drawbridge/auth/<secretName>/<key>}.
*/}}

{{/* One TOML value: whole numbers as integers, other numbers as floats, strings and lists as JSON. */}}
{{- define "drawbridge.tomlValue" -}}
{{- if and (kindIs "float64" .) (ne (float64 (int64 .)) .) -}}
{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) -}}
{{ int64 . }}
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else -}}
{{ toJson . }}
{{- end -}}
{{- end }}

{{/* The file a {secretName, key} reference reads. */}}
{{- define "drawbridge.secretFile" -}}
{{- printf "${file:/etc/drawbridge/auth/%s/%s}" .secretName .key -}}
{{- end }}

{{/* `key = value` lines of a plain table: every key except those in .skip. */}}
{{- define "drawbridge.tomlKeys" -}}
{{- range $k, $v := .values }}
{{- if and (not (has $k $.skip)) (not (kindIs "invalid" $v)) }}
{{ snakecase $k }} = {{ include "drawbridge.tomlValue" $v }}
{{- end }}
{{- end }}
{{- end }}

{{/* A permissions template ([<path>.read] / [<path>.write] in the Ditto shape). */}}
{{- define "drawbridge.permissions" -}}
{{- $path := .path }}
{{- if hasKey .permissions "remoteQuery" }}

[{{ $path }}]
remoteQuery = {{ .permissions.remoteQuery }}
{{- end }}
{{- range $access := list "read" "write" }}
{{- with (get $.permissions $access) }}

[{{ $path }}.{{ $access }}]
everything = {{ .everything | default false }}
{{- with .queriesByCollection }}

[{{ $path }}.{{ $access }}.queriesByCollection]
{{- range $collection, $queries := . }}
{{ toJson $collection }} = {{ toJson $queries }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Every Secret the auth values name, once each, as a JSON list. */}}
{{- define "drawbridge.authSecrets" -}}
{{- $names := list }}
{{- range $name, $p := .Values.providers }}
{{- with $p.signingSecret }}{{ $names = append $names .secretName }}{{ end }}
{{- end }}
{{- $session := .Values.session | default dict }}
{{- $names = append $names (include "drawbridge.sessionKeyRef" . | fromJson).secretName }}
{{- range $section, $values := .Values.config }}
{{- range $k, $v := $values }}
{{- if kindIs "map" $v }}{{ $names = append $names $v.secretName }}{{ end }}
{{- end }}
{{- end }}
{{- range $session.previousKeySecrets }}{{ $names = append $names .secretName }}{{ end }}
{{- $names | uniq | sortAlpha | toJson }}
{{- end }}

{{/* A volume name for the Secret named `.`: a DNS label, whatever the Secret's name. */}}
{{- define "drawbridge.authVolume" -}}
{{- printf "auth-%s" (sha256sum . | trunc 10) -}}
{{- end }}

{{- define "drawbridge.authConfig" -}}
{{- range $name, $p := .Values.providers }}

[providers.{{ toJson $name }}]
{{- include "drawbridge.tomlKeys" (dict "values" $p "skip" (list "signingSecret" "headers" "permissions" "profileClaims")) }}
{{- with $p.signingSecret }}
signing_secret = {{ include "drawbridge.secretFile" . | toJson }}
{{- end }}
{{- with $p.headers }}

[providers.{{ toJson $name }}.headers]
{{- range $h, $v := . }}
{{ toJson $h }} = {{ toJson $v }}
{{- end }}
{{- end }}
{{- with $p.profileClaims }}

[providers.{{ toJson $name }}.profile_claims]
{{- include "drawbridge.tomlKeys" (dict "values" . "skip" list) }}
{{- end }}
{{- with $p.permissions }}
{{- include "drawbridge.permissions" (dict "path" (printf "providers.%s.permissions" (toJson $name)) "permissions" .) }}
{{- end }}
{{- end }}
{{- range $name, $g := .Values.groups }}

[providers.{{ toJson $name }}]
kind = "group"
{{- include "drawbridge.tomlKeys" (dict "values" $g "skip" list) }}
{{- end }}
{{- range $name, $a := .Values.apps }}

[apps.{{ toJson $name }}]
providers = {{ $a.providers | default list | toJson }}
{{- end }}
{{- /* Always: every pod signs with the one shared key, never an ephemeral one. */}}
{{- $s := .Values.session | default dict }}

[session]
{{- include "drawbridge.tomlKeys" (dict "values" $s "skip" (list "keySecret" "previousKeySecrets")) }}
{{- with include "drawbridge.sessionKeyRef" $ | fromJson }}
key_file = {{ printf "/etc/drawbridge/auth/%s/%s" .secretName .key | toJson }}
{{- end }}
{{- with $s.previousKeySecrets }}
previous_key_files = [{{ range $i, $p := . }}{{ if $i }}, {{ end }}{{ printf "/etc/drawbridge/auth/%s/%s" $p.secretName $p.key | toJson }}{{ end }}]
{{- end }}
{{- range $section, $values := dict "cache" .Values.cache "ditto" .Values.ditto "forward_auth" .Values.forwardAuth "native" .Values.native }}
{{- if $values }}

[{{ $section }}]
{{- include "drawbridge.tomlKeys" (dict "values" $values "skip" list) }}
{{- end }}
{{- end }}
{{- end }}
