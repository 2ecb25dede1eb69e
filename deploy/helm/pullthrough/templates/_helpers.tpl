{{/* The chart's name, at most 63 characters. */}}
{{- define "pullthrough.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's resource name: <release>-pullthrough, or the release name when it already
says pullthrough. */}}
{{- define "pullthrough.fullname" -}}
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

{{- define "pullthrough.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pullthrough.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The server's pods (the Deployment, the Service, the budget); the migrate Job's pod is
not one of them. */}}
{{- define "pullthrough.serverSelectorLabels" -}}
{{ include "pullthrough.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "pullthrough.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pullthrough.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pullthrough.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding the keys and the database URL: the chart's, or one you manage. */}}
{{- define "pullthrough.secretName" -}}
{{- default (include "pullthrough.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The configuration file. Settings given by variables in the pod (listen, data_dir,
database_url, advertise_url) are not in it. */}}
{{- define "pullthrough.configFile" -}}
{{- $config := deepCopy .Values.config }}
{{- $_ := set $config "storage" .Values.storage }}
{{- toYaml $config }}
{{- end }}
