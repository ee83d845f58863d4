{{- define "tracer-agent.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tracer-agent.labels" -}}
app.kubernetes.io/name: tracer-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tracer-agent.selector" -}}
app.kubernetes.io/name: tracer-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
