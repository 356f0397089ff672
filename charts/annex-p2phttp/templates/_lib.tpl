{{/* PodDisruptionBudget of a component: (dict "ctx" . "component" "gateway" "values" .Values.gateway) */}}
{{- define "annex-p2phttp.pdb" -}}
{{- if .values.podDisruptionBudget.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "annex-p2phttp.componentName" . }}
  labels:
    {{- include "annex-p2phttp.componentLabels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "annex-p2phttp.componentSelectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* ServiceMonitor of a component: (dict "ctx" . "component" "gateway" "port" "http" "scheme" "http") */}}
{{- define "annex-p2phttp.serviceMonitor" -}}
{{- if .ctx.Values.metrics.serviceMonitor.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "annex-p2phttp.componentName" . }}
  labels:
    {{- include "annex-p2phttp.componentLabels" . | nindent 4 }}
    {{- with .ctx.Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "annex-p2phttp.componentSelectorLabels" . | nindent 6 }}
      {{- with .selector }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  endpoints:
    - port: {{ .port }}
      path: /metrics
      scheme: {{ .scheme }}
      interval: {{ .ctx.Values.metrics.serviceMonitor.interval }}
      {{- if eq .scheme "https" }}
      tlsConfig:
        insecureSkipVerify: true
      {{- end }}
{{- end }}
{{- end }}

{{/*
Pod affinity that keeps pods mounting a chart-made ReadWriteOnce claim on the node of the
proxy-worker pods; the component's own affinity value replaces it. (dict "ctx" . "values" .Values.x)
*/}}
{{- define "annex-p2phttp.repositoriesAffinity" -}}
{{- if .values.affinity }}
affinity:
  {{- toYaml .values.affinity | nindent 2 }}
{{- else if and (not .ctx.Values.persistence.existingClaim) (eq .ctx.Values.persistence.accessMode "ReadWriteOnce") }}
affinity:
  podAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "annex-p2phttp.componentSelectorLabels" (dict "ctx" .ctx "component" "proxy-worker") | nindent 12 }}
{{- end }}
{{- end }}
