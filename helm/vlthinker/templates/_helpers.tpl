{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "vlthinker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vlthinker.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vlthinker.mlflow.fullname" -}}{{ include "vlthinker.fullname" . }}-mlflow{{- end -}}
{{- define "vlthinker.postgresql.fullname" -}}{{ include "vlthinker.fullname" . }}-postgresql{{- end -}}
{{- define "vlthinker.minio.fullname" -}}{{ include "vlthinker.fullname" . }}-minio{{- end -}}
{{- define "vlthinker.pipeline.configMapName" -}}{{ include "vlthinker.fullname" . }}-pipeline-config{{- end -}}

{{- define "vlthinker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vlthinker.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------------------------- */}}

{{- define "vlthinker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vlthinker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vlthinker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vlthinker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vlthinker
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Component labels: (dict "ctx" $ "component" "mlflow") */}}
{{- define "vlthinker.componentLabels" -}}
{{ include "vlthinker.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vlthinker.componentSelectorLabels" -}}
{{ include "vlthinker.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Images: (dict "image" .Values.x.image "ctx" $) -> repository[:tag|@digest] --------------- */}}
{{- define "vlthinker.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "vlthinker.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Endpoints -------------------------------------------------------------------------------- */}}

{{- define "vlthinker.mlflow.url" -}}
{{- printf "http://%s.%s.svc.cluster.local:%v" (include "vlthinker.mlflow.fullname" .) .Release.Namespace .Values.mlflow.service.port -}}
{{- end -}}

{{- define "vlthinker.postgresql.host" -}}
{{- if .Values.postgresql.bundled -}}
{{- printf "%s.%s.svc.cluster.local" (include "vlthinker.postgresql.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- required "postgresql.host is required when postgresql.bundled is false" .Values.postgresql.host -}}
{{- end -}}
{{- end -}}

{{- define "vlthinker.s3.endpointUrl" -}}
{{- if .Values.artifacts.s3.endpointUrl -}}
{{- .Values.artifacts.s3.endpointUrl -}}
{{- else if .Values.minio.bundled -}}
{{- printf "http://%s.%s.svc.cluster.local:9000" (include "vlthinker.minio.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "vlthinker.artifacts.destination" -}}
{{- $path := trimAll "/" .Values.artifacts.path -}}
{{- if $path -}}
{{- printf "s3://%s/%s" .Values.artifacts.bucket $path -}}
{{- else -}}
{{- printf "s3://%s" .Values.artifacts.bucket -}}
{{- end -}}
{{- end -}}

{{/*
Host headers the MLflow server accepts (it matches the header with its port, hence the ":*"
patterns): the service by short name, namespaced name and FQDN, localhost for port-forward, the
ingress host, then the user's extras.
*/}}
{{- define "vlthinker.mlflow.allowedHosts" -}}
{{- $svc := include "vlthinker.mlflow.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $hosts := list "localhost" "localhost:*" "127.0.0.1" "127.0.0.1:*" -}}
{{- range $name := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $hosts = append $hosts $name -}}
{{- $hosts = append $hosts (printf "%s:*" $name) -}}
{{- end -}}
{{- if and .Values.mlflow.ingress.enabled .Values.mlflow.ingress.host -}}
{{- $hosts = append $hosts .Values.mlflow.ingress.host -}}
{{- $hosts = append $hosts (printf "%s:*" .Values.mlflow.ingress.host) -}}
{{- end -}}
{{- concat $hosts .Values.mlflow.allowedHosts | uniq | join "," -}}
{{- end -}}

{{/* S3 credentials as env (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) from the Secret ---------- */}}
{{- define "vlthinker.s3.credentialsEnv" -}}
{{- with .Values.artifacts.s3.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $.Values.artifacts.s3.accessKeyIdKey | quote }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $.Values.artifacts.s3.secretAccessKeyKey | quote }}
{{- end }}
{{- end -}}

{{- define "vlthinker.s3.settingsEnv" -}}
{{- with (include "vlthinker.s3.endpointUrl" .) }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.artifacts.s3.region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- if .Values.artifacts.s3.ignoreTls }}
- name: MLFLOW_S3_IGNORE_TLS
  value: "true"
{{- end }}
{{- end -}}

{{/* The submit container spec shared by the Job and the CronJob: (dict "ctx" $ "runName" "...") */}}
{{- define "vlthinker.pipeline.podSpec" -}}
{{- $ := .ctx -}}
{{- $p := $.Values.pipeline -}}
serviceAccountName: {{ include "vlthinker.serviceAccountName" $ }}
automountServiceAccountToken: false
restartPolicy: Never
{{- include "vlthinker.imagePullSecrets" $ }}
securityContext:
  {{- toYaml $p.podSecurityContext | nindent 2 }}
initContainers:
  - name: compile
    image: {{ include "vlthinker.image" (dict "image" $p.image "ctx" $) | quote }}
    imagePullPolicy: {{ $p.image.pullPolicy }}
    command: ["vlthinker"]
    # A writable working directory: the root filesystem is read-only.
    workingDir: /work
    args:
      - compile
      - --config
      - /etc/vlthinker/config.yaml
      - --output
      - /work/pipeline.yaml
    env:
      {{- include "vlthinker.pipeline.env" $ | nindent 6 }}
    resources:
      {{- toYaml $p.resources | nindent 6 }}
    securityContext:
      {{- toYaml $p.securityContext | nindent 6 }}
    volumeMounts:
      {{- include "vlthinker.pipeline.volumeMounts" $ | nindent 6 }}
containers:
  - name: submit
    image: {{ include "vlthinker.image" (dict "image" $p.image "ctx" $) | quote }}
    imagePullPolicy: {{ $p.image.pullPolicy }}
    command: ["vlthinker"]
    workingDir: /work
    args:
      - submit
      - --host
      - {{ $p.kfp.host | quote }}
      - --package
      - /work/pipeline.yaml
      - --experiment
      - {{ $p.experiment | quote }}
      - --run-name
      - {{ .runName | quote }}
    env:
      {{- include "vlthinker.pipeline.env" $ | nindent 6 }}
    resources:
      {{- toYaml $p.resources | nindent 6 }}
    securityContext:
      {{- toYaml $p.securityContext | nindent 6 }}
    volumeMounts:
      {{- include "vlthinker.pipeline.volumeMounts" $ | nindent 6 }}
volumes:
  - name: config
    configMap:
      name: {{ include "vlthinker.pipeline.configMapName" $ }}
  - name: work
    emptyDir: {}
  - name: tmp
    emptyDir: {}
  {{- if $p.kfp.serviceAccountToken.enabled }}
  - name: kfp-token
    projected:
      sources:
        - serviceAccountToken:
            path: token
            audience: {{ $p.kfp.serviceAccountToken.audience | quote }}
            expirationSeconds: {{ $p.kfp.serviceAccountToken.expirationSeconds }}
  {{- end }}
{{- with $p.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $p.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $p.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "vlthinker.pipeline.volumeMounts" -}}
- name: config
  mountPath: /etc/vlthinker
  readOnly: true
- name: work
  mountPath: /work
- name: tmp
  mountPath: /tmp
{{- if .Values.pipeline.kfp.serviceAccountToken.enabled }}
- name: kfp-token
  mountPath: /var/run/secrets/kubeflow/pipelines
  readOnly: true
{{- end }}
{{- end -}}

{{- define "vlthinker.pipeline.env" -}}
{{- $p := .Values.pipeline -}}
- name: HOME
  value: /tmp
- name: MLFLOW_TRACKING_URI
  value: {{ include "vlthinker.mlflow.url" . | quote }}
{{- with $p.mlflowCredentials.existingSecret }}
- name: MLFLOW_TRACKING_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $p.mlflowCredentials.usernameKey | quote }}
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $p.mlflowCredentials.passwordKey | quote }}
{{- end }}
{{- if $p.passS3Credentials }}
{{- include "vlthinker.s3.credentialsEnv" . }}
{{- include "vlthinker.s3.settingsEnv" . }}
{{- end }}
- name: KF_PIPELINES_ENDPOINT
  value: {{ $p.kfp.host | quote }}
{{- with $p.kfp.tokenSecret.name }}
- name: KFP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $p.kfp.tokenSecret.key | quote }}
{{- end }}
{{- if $p.kfp.serviceAccountToken.enabled }}
- name: KF_PIPELINES_SA_TOKEN_PATH
  value: /var/run/secrets/kubeflow/pipelines/token
{{- end }}
{{- with $p.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "vlthinker.pipeline.runName" -}}
{{- default (printf "%s-r%d" .Release.Name (int .Release.Revision)) .Values.pipeline.runName -}}
{{- end -}}

{{/* Postgres connection env for the MLflow image's entrypoint (it composes the URI). */}}
{{- define "vlthinker.mlflow.dbEnv" -}}
{{- $pg := .Values.postgresql -}}
- name: MLFLOW_DB_HOST
  value: {{ include "vlthinker.postgresql.host" . | quote }}
- name: MLFLOW_DB_PORT
  value: {{ $pg.port | quote }}
- name: MLFLOW_DB_NAME
  value: {{ $pg.database | quote }}
{{- with $pg.sslMode }}
- name: MLFLOW_DB_SSLMODE
  value: {{ . | quote }}
{{- end }}
- name: MLFLOW_DB_USER
  valueFrom:
    secretKeyRef:
      name: {{ $pg.existingSecret | quote }}
      key: {{ $pg.usernameKey | quote }}
- name: MLFLOW_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $pg.existingSecret | quote }}
      key: {{ $pg.passwordKey | quote }}
{{- end -}}
