{{/* The release's full name, also the name of most objects. */}}
{{- define "warren.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "warren.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "warren.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "warren.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "warren.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "warren.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "warren.secretName" -}}
{{- default (printf "%s-broker" (include "warren.fullname" .)) .Values.broker.existingSecret -}}
{{- end -}}

{{/* Labels of a worker Deployment, its pods and its TaskQueue. */}}
{{- define "warren.workerLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: worker
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
warren.dev/worker: {{ .name }}
{{- end -}}

{{- define "warren.workerSecretName" -}}
{{- default (printf "%s-amqp" (include "warren.fullname" .)) .Values.workers.existingAmqpSecret -}}
{{- end -}}
