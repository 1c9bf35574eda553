{{/* Names, labels, images and the pieces every role shares. */}}

{{- define "conduit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name. 40 characters at most, so that the longest
StatefulSet name (<prefix>-registry) leaves room for Kubernetes' pod-name suffixes.
*/}}
{{- define "conduit.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Resource names of the roles. */}}
{{- define "conduit.registry.name" -}}{{ include "conduit.fullname" . }}-registry{{- end }}
{{- define "conduit.nats.name" -}}{{ include "conduit.fullname" . }}-nats{{- end }}
{{- define "conduit.scheduler.name" -}}{{ include "conduit.fullname" . }}-scheduler{{- end }}
{{- define "conduit.gateway.name" -}}{{ include "conduit.fullname" . }}-gateway{{- end }}
{{/* The runner StatefulSet: the one object the scheduler may scale. */}}
{{- define "conduit.runner.name" -}}{{ include "conduit.fullname" . }}-runner{{- end }}

{{- define "conduit.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "conduit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: conduit
{{- end }}

{{/* Selector labels of one role: include with (dict "ctx" $ "component" "runner"). */}}
{{- define "conduit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conduit.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "conduit.componentLabels" -}}
{{ include "conduit.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An image reference: include with (dict "ctx" $ "image" .Values.runners.image). */}}
{{- define "conduit.image" -}}
{{- $img := mergeOverwrite (deepCopy .ctx.Values.image) (.image | default dict) }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default .ctx.Chart.AppVersion $img.tag | toString) }}
{{- end }}
{{- end }}

{{- define "conduit.imagePullPolicy" -}}
{{- $img := mergeOverwrite (deepCopy .ctx.Values.image) (.image | default dict) }}
{{- $img.pullPolicy }}
{{- end }}

{{- define "conduit.natsUrl" -}}
{{- if .Values.nats.enabled }}
{{- printf "nats://%s:%d" (include "conduit.nats.name" .) (int .Values.nats.clientPort) }}
{{- else }}
{{- required "nats.url is required when nats.enabled is false" .Values.nats.url }}
{{- end }}
{{- end }}

{{- define "conduit.registryUrl" -}}
{{- printf "http://%s:%d" (include "conduit.registry.name" .) (int .Values.registry.port) }}
{{- end }}

{{/* CONDUIT_API_KEY from the Secret the user names. */}}
{{- define "conduit.apiKeyEnv" -}}
- name: CONDUIT_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ required "apiKey.existingSecret: name the Secret holding the API key" .Values.apiKey.existingSecret }}
      key: {{ .Values.apiKey.key }}
{{- end }}

{{/* CONDUIT_METRICS_KEY, when a metrics key Secret is named. */}}
{{- define "conduit.metricsKeyEnv" -}}
{{- if .Values.metrics.keySecret.name }}
- name: CONDUIT_METRICS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.metrics.keySecret.name }}
      key: {{ .Values.metrics.keySecret.key }}
{{- end }}
{{- end }}

{{/* The pod fields every role shares. */}}
{{- define "conduit.podCommon" -}}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Which runner autoscaler is on: kubernetes, keda or off. */}}
{{- define "conduit.autoscaling" -}}
{{- $mode := .Values.runners.autoscaling | toString }}
{{- if not (has $mode (list "kubernetes" "keda" "off")) }}
{{- fail (printf "runners.autoscaling must be kubernetes, keda or off (got %q)" $mode) }}
{{- end }}
{{- $mode }}
{{- end }}
