{{/* Names, labels and shared pieces of the annex-p2phttp chart. */}}

{{- define "annex-p2phttp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "annex-p2phttp.fullname" -}}
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

{{/* Name of a component's objects: (dict "ctx" . "component" "gateway") */}}
{{- define "annex-p2phttp.componentName" -}}
{{- printf "%s-%s" (include "annex-p2phttp.fullname" .ctx | trunc (int (sub 62 (len .component)))) .component | trimSuffix "-" }}
{{- end }}

{{- define "annex-p2phttp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "annex-p2phttp.labels" -}}
helm.sh/chart: {{ include "annex-p2phttp.chart" . }}
{{ include "annex-p2phttp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "annex-p2phttp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "annex-p2phttp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of a component: (dict "ctx" . "component" "gateway") */}}
{{- define "annex-p2phttp.componentLabels" -}}
{{ include "annex-p2phttp.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "annex-p2phttp.componentSelectorLabels" -}}
{{ include "annex-p2phttp.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "annex-p2phttp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "annex-p2phttp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "annex-p2phttp.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "annex-p2phttp.repositoriesClaim" -}}
{{- default (printf "%s-repositories" (include "annex-p2phttp.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/* Environment of every app: the Redis URL, the key prefix, extra variables. */}}
{{- define "annex-p2phttp.env" -}}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      {{- if and (not .Values.redis.enabled) .Values.redis.existingSecret }}
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.existingSecretKey }}
      {{- else }}
      name: {{ include "annex-p2phttp.fullname" . }}
      key: redis-url
      {{- end }}
- name: ANNEX_P2PHTTP_REDIS_PREFIX
  valueFrom:
    configMapKeyRef:
      name: {{ include "annex-p2phttp.fullname" . }}
      key: redis-prefix
- name: HOME
  value: /home/annex
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod annotations that roll the pods when the ConfigMap or Secret changes. */}}
{{- define "annex-p2phttp.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{/* Writable scratch space: the root filesystem is read-only. */}}
{{- define "annex-p2phttp.scratchVolumes" -}}
- name: home
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- end }}

{{- define "annex-p2phttp.scratchMounts" -}}
- name: home
  mountPath: /home/annex
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Probes on /healthz (liveness) and /readyz (readiness): (dict "port" "http" "scheme" "HTTP") */}}
{{- define "annex-p2phttp.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
    scheme: {{ .scheme }}
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
    scheme: {{ .scheme }}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}

{{/* Checks that values make sense together; fails the render with a message otherwise. */}}
{{/* Where the gateway finds the policy file: "configmap NAME", "secret NAME", or "" (none). */}}
{{- define "annex-p2phttp.policySource" -}}
{{- $p := .Values.auth.policy }}
{{- if $p.existingSecret }}secret {{ $p.existingSecret }}
{{- else if $p.existingConfigMap }}configmap {{ $p.existingConfigMap }}
{{- else if $p.inline }}configmap {{ include "annex-p2phttp.fullname" . }}-policy
{{- end }}
{{- end }}

{{/* The redis+sentinel:// URL of redis.sentinel (passwords percent-encoded). */}}
{{- define "annex-p2phttp.sentinelUrl" -}}
{{- $s := .Values.redis.sentinel -}}
{{- $auth := "" -}}
{{- if $s.password }}{{ $auth = printf ":%s@" (urlquery $s.password | replace "+" "%20") }}{{ end -}}
{{- $query := list -}}
{{- if $s.db }}{{ $query = append $query (printf "db=%d" (int $s.db)) }}{{ end -}}
{{- if $s.sentinelPassword }}{{ $query = append $query (printf "sentinelPassword=%s" (urlquery $s.sentinelPassword | replace "+" "%20")) }}{{ end -}}
{{- printf "%s://%s%s/%s" (ternary "rediss+sentinel" "redis+sentinel" (default false $s.tls)) $auth (join "," $s.hosts) (urlquery $s.masterName | replace "+" "%20") -}}
{{- if $query }}?{{ join "&" $query }}{{ end -}}
{{- end }}

{{- define "annex-p2phttp.validate" -}}
{{- if and (not .Values.redis.enabled) (not .Values.redis.url) (not .Values.redis.existingSecret) (not .Values.redis.sentinel.hosts) }}
{{- fail "redis: set redis.url, redis.sentinel or redis.existingSecret, or enable the in-chart Redis (redis.enabled=true)" }}
{{- end }}
{{- if .Values.redis.sentinel.hosts }}
{{- if .Values.redis.enabled }}
{{- fail "redis: redis.sentinel names an external Sentinel set: set redis.enabled=false" }}
{{- end }}
{{- if or .Values.redis.url .Values.redis.existingSecret }}
{{- fail "redis: set one of redis.url, redis.sentinel and redis.existingSecret" }}
{{- end }}
{{- if not .Values.redis.sentinel.masterName }}
{{- fail "redis: redis.sentinel.masterName names the master set the sentinels monitor" }}
{{- end }}
{{- end }}
{{- if and (not .Values.auth.overHttp) (not .Values.gateway.tls.secretName) (or .Values.auth.users .Values.auth.existingSecret) }}
{{- fail "auth: users can log in only over HTTPS with auth.overHttp=false: set gateway.tls.secretName" }}
{{- end }}
{{- $p := .Values.auth.policy }}
{{- if gt (len (compact (list $p.inline $p.existingConfigMap $p.existingSecret))) 1 }}
{{- fail "auth.policy: set one of inline, existingConfigMap and existingSecret" }}
{{- end }}
{{- if and (include "annex-p2phttp.policySource" .) (or (ne .Values.auth.unauthenticated "none") .Values.auth.unauthNolocking) }}
{{- fail "auth.policy: the policy says per repository what anonymous users may do; leave auth.unauthenticated none and auth.unauthNolocking false" }}
{{- end }}
{{- end }}
