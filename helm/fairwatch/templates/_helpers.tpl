{{/* Names and labels. */}}
{{- define "fairwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fairwatch.fullname" -}}
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

{{- define "fairwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fairwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fairwatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "fairwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fairwatch
{{- end }}

{{- define "fairwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fairwatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fairwatch.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The fairwatch YAML config: the user's `config` with what the chart decides on top. */}}
{{- define "fairwatch.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $chart := dict "metrics" (dict "host" "0.0.0.0" "port" (int .Values.metricsPort)) }}
{{- if not .Values.secrets.database.existingSecret }}
{{- $_ := set $chart "state" (dict "url" (printf "sqlite:///%s/state.db" .Values.stateVolume.mountPath)) }}
{{- end }}
{{- $options := dict }}
{{- with .Values.secrets.kafka.sasl }}
{{- if .existingSecret }}
{{- $_ := set $options "security_protocol" .securityProtocol }}
{{- $_ := set $options "sasl_mechanism" .mechanism }}
{{- end }}
{{- end }}
{{- with .Values.secrets.kafka.tls }}
{{- if .existingSecret }}
{{- if not $.Values.secrets.kafka.sasl.existingSecret }}
{{- $_ := set $options "security_protocol" "SSL" }}
{{- end }}
{{- $_ := set $options "ssl_cafile" (printf "/etc/fairwatch/kafka-tls/%s" .caKey) }}
{{- if .certKey }}
{{- $_ := set $options "ssl_certfile" (printf "/etc/fairwatch/kafka-tls/%s" .certKey) }}
{{- end }}
{{- if .keyKey }}
{{- $_ := set $options "ssl_keyfile" (printf "/etc/fairwatch/kafka-tls/%s" .keyKey) }}
{{- end }}
{{- end }}
{{- end }}
{{- if $options }}
{{- $_ := set $chart "kafka" (dict "options" $options) }}
{{- end }}
{{- toYaml (mustMergeOverwrite $cfg $chart) }}
{{- end }}
