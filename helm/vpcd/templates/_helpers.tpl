{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "vpcd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, plus the chart's unless it contains it. */}}
{{- define "vpcd.fullname" -}}
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

{{- define "vpcd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels (app.kubernetes.io/*). */}}
{{- define "vpcd.labels" -}}
helm.sh/chart: {{ include "vpcd.chart" . }}
{{ include "vpcd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vpcd
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "vpcd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vpcd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels and selector labels of one component: (dict "root" $ "component" "api"). */}}
{{- define "vpcd.componentLabels" -}}
{{ include "vpcd.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "vpcd.componentSelectorLabels" -}}
{{ include "vpcd.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The one image every workload runs. */}}
{{- define "vpcd.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag | toString }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding DATABASE_URL, REDIS_URL and VPCD_ADMIN_TOKEN. */}}
{{- define "vpcd.secretName" -}}
{{- default (include "vpcd.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* One env entry read from the Secret: (dict "root" $ "name" "DATABASE_URL" "key" "databaseUrl"). */}}
{{- define "vpcd.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "vpcd.secretName" .root }}
      key: {{ index .root.Values.secretKeys .key }}
{{- end }}

{{/* Environment of the processes that hold database credentials (API, controller, migration). */}}
{{- define "vpcd.serverEnv" -}}
{{ include "vpcd.secretEnv" (dict "root" . "name" "DATABASE_URL" "key" "databaseUrl") }}
{{ include "vpcd.secretEnv" (dict "root" . "name" "REDIS_URL" "key" "redisUrl") }}
{{ include "vpcd.commonEnv" . }}
{{- end }}

{{/* Plain settings every vpcd container gets. */}}
{{- define "vpcd.commonEnv" -}}
- name: VPCD_BUS_NAMESPACE
  value: {{ .Values.busNamespace | quote }}
- name: PYTHONUNBUFFERED
  value: "1"
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by API, controller and migration pods. */}}
{{- define "vpcd.podCommon" -}}
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Checksum of the chart-made Secret's inputs, so pods restart when they change. */}}
{{- define "vpcd.secretChecksum" -}}
{{- if not .Values.existingSecret -}}
{{- printf "%s\n%s\n%s" (tpl .Values.database.url .) (tpl .Values.redis.url .) .Values.adminToken | sha256sum -}}
{{- else -}}
{{- .Values.existingSecret | sha256sum -}}
{{- end -}}
{{- end }}
