{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "multitalk.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name for the operator's objects. */}}
{{- define "multitalk.fullname" -}}
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

{{/* Labels of every object of the release, without the component. */}}
{{- define "multitalk.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "multitalk.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: multitalk
{{- end }}

{{/* Labels of the operator's objects. */}}
{{- define "multitalk.labels" -}}
{{ include "multitalk.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "multitalk.selectorLabels" -}}
app.kubernetes.io/name: {{ include "multitalk.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "multitalk.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "multitalk.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "multitalk.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "multitalk.runnerImage" -}}
{{- printf "%s:%s" .Values.runner.image.repository (default .Chart.AppVersion .Values.runner.image.tag) }}
{{- end }}

{{/*
What the operator may do in a watched namespace. Never Secrets: S3 credentials reach
runner pods by secretKeyRef, which the kubelet resolves, not the operator.
*/}}
{{- define "multitalk.namespacedRules" -}}
- apiGroups: ["multitalk.dev"]
  resources: ["talkingvideos", "talkingvideos/status"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Pod Security "restricted" container settings shared by the operator and the test pod. */}}
{{- define "multitalk.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* OperatorSettings as environment variables; unset optional settings are left out. */}}
{{- define "multitalk.operatorEnv" -}}
- name: MULTITALK_NAMESPACES
  value: {{ join "," .Values.watchNamespaces | quote }}
- name: MULTITALK_RUNNER_IMAGE
  value: {{ include "multitalk.runnerImage" . | quote }}
- name: MULTITALK_RUNNER_IMAGE_PULL_POLICY
  value: {{ .Values.runner.image.pullPolicy | quote }}
- name: MULTITALK_RUNNER_RESOURCES
  value: {{ .Values.runner.resources | toJson | quote }}
{{- with .Values.storage.endpoint }}
- name: MULTITALK_STORAGE_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.storage.region }}
- name: MULTITALK_STORAGE_REGION
  value: {{ . | quote }}
{{- end }}
{{- with .Values.storage.secretName }}
- name: MULTITALK_STORAGE_SECRET_NAME
  value: {{ . | quote }}
{{- end }}
{{- with .Values.modelCache.claimName }}
- name: MULTITALK_MODEL_CACHE_CLAIM
  value: {{ . | quote }}
{{- end }}
- name: MULTITALK_MODEL_CACHE_MOUNT_PATH
  value: {{ .Values.modelCache.mountPath | quote }}
{{- with .Values.kueue.queueName }}
- name: MULTITALK_QUEUE_NAME
  value: {{ . | quote }}
{{- end }}
{{- with .Values.runner.runtimeClassName }}
- name: MULTITALK_RUNTIME_CLASS_NAME
  value: {{ . | quote }}
{{- end }}
- name: MULTITALK_METRICS_PORT
  value: {{ .Values.metrics.port | quote }}
- name: MULTITALK_HEALTH_PORT
  value: {{ .Values.health.port | quote }}
- name: MULTITALK_PROGRESS_POLL_SECONDS
  value: {{ .Values.operator.progressPollSeconds | quote }}
- name: MULTITALK_RESYNC_SECONDS
  value: {{ .Values.operator.resyncSeconds | quote }}
- name: MULTITALK_WATCH_SERVER_TIMEOUT
  value: {{ .Values.operator.watchServerTimeout | quote }}
- name: MULTITALK_WATCH_CLIENT_TIMEOUT
  value: {{ .Values.operator.watchClientTimeout | quote }}
- name: MULTITALK_RUNNER_RUN_AS_USER
  value: {{ .Values.runner.runAsUser | quote }}
- name: MULTITALK_PROGRESS_LOG_BYTES
  value: {{ .Values.operator.progressLogBytes | quote }}
- name: MULTITALK_CLEANUP_ON_DELETE
  value: {{ .Values.operator.cleanupOnDelete | quote }}
- name: MULTITALK_COPY_LABEL_KEYS
  value: {{ join "," .Values.copyLabelKeys | quote }}
{{- end }}

{{/* Checks values.schema.json cannot express with a clear message. */}}
{{- define "multitalk.validate" -}}
{{- if le (int .Values.operator.watchClientTimeout) (int .Values.operator.watchServerTimeout) }}
{{- fail (printf "operator.watchClientTimeout (%v) must be longer than operator.watchServerTimeout (%v): the client timeout is what notices a silently dead watch" .Values.operator.watchClientTimeout .Values.operator.watchServerTimeout) }}
{{- end }}
{{- range .Values.copyLabelKeys }}
{{- if or (eq . "app.kubernetes.io/instance") (hasPrefix "argocd.argoproj.io/" .) }}
{{- fail (printf "copyLabelKeys: %q must not be copied to Jobs: Argo CD would treat the Jobs as its own and prune them" .) }}
{{- end }}
{{- end }}
{{- range .Values.operator.extraEnv }}
{{- if hasPrefix "MULTITALK_" .name }}
{{- fail (printf "operator.extraEnv: %s is set from the chart's values; set the matching value instead of an extra variable" .name) }}
{{- end }}
{{- end }}
{{- if has (clean .Values.modelCache.mountPath) (list "/" "/tmp") }}
{{- fail (printf "modelCache.mountPath: %q would hide the image's files or its scratch space; use a path such as /models" .Values.modelCache.mountPath) }}
{{- end }}
{{- end }}
