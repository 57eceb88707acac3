{{- /*
Shared named templates. Every per-service object is rendered by one template here, driven by
`services.<name>` merged over `serviceDefaults`, so the four services never copy YAML.
A "service context" is a dict: {root: $, name: <service>, svc: <merged values>}.
*/ -}}

{{- define "mutualis.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mutualis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mutualis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* The objects' name for one service: <fullname>-<service>. */ -}}
{{- define "mutualis.service.fullname" -}}
{{- printf "%s-%s" (include "mutualis.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* Selector labels: stable for the life of a release (never add version here). */ -}}
{{- define "mutualis.service.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "mutualis.service.labels" -}}
{{ include "mutualis.service.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .name }}
app.kubernetes.io/part-of: mutualis
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "mutualis.chart" .root }}
{{- end -}}

{{- /* Merged values of one service, as a JSON string (templates cannot return dicts). */ -}}
{{- define "mutualis.service.values" -}}
{{- $own := index .root.Values.services .name | default dict -}}
{{- toJson (mustMergeOverwrite (deepCopy .root.Values.serviceDefaults) (deepCopy $own)) -}}
{{- end -}}

{{- define "mutualis.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- /* The NATS servers every service connects to, as a JSON list for MUTUALIS_NATS_URLS. */ -}}
{{- define "mutualis.natsUrls" -}}
{{- if .Values.nats.enabled -}}
{{- $host := printf "%s-nats" .Release.Name -}}
{{- if contains "nats" .Release.Name }}{{ $host = .Release.Name }}{{ end -}}
{{- $scheme := ternary "tls" "nats" .Values.natsAuth.tls.enabled -}}
{{- toJson (list (printf "%s://%s:%d" $scheme $host (int .Values.nats.clientPort))) -}}
{{- else -}}
{{- if not .Values.externalNats.urls -}}
{{- fail "externalNats.urls is required when nats.enabled=false: list the NATS servers the services connect to (e.g. --set externalNats.urls={nats://nats.example.org:4222})" -}}
{{- end -}}
{{- toJson .Values.externalNats.urls -}}
{{- end -}}
{{- end -}}

{{- define "mutualis.issuerUrl" -}}
{{- required "platform.issuerUrl is required: the public URL of the identity service, e.g. https://login.example.org" .Values.platform.issuerUrl | trimSuffix "/" -}}
{{- end -}}

{{- /* The tenants file the kernel reads through MUTUALIS_TENANTS_FILE. */ -}}
{{- define "mutualis.tenantsFile" -}}
{{- if not .Values.tenants.list -}}
{{- fail "tenants.list is empty: list at least the metropolis" -}}
{{- end -}}
{{- toYaml (dict "version" .Values.tenants.version "tenants" .Values.tenants.list) -}}
{{- end -}}

{{- /* ---------------------------------------------------------------- ConfigMap */ -}}
{{- define "mutualis.service.configmap" -}}
{{- $root := .root -}}{{- $svc := .svc -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "mutualis.service.fullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "mutualis.service.labels" . | nindent 4 }}
data:
  MUTUALIS_SERVICE_NAME: {{ .name | quote }}
  MUTUALIS_HTTP_HOST: "0.0.0.0"
  MUTUALIS_HTTP_PORT: {{ $svc.port | quote }}
  MUTUALIS_NATS_URLS: {{ include "mutualis.natsUrls" $root | quote }}
  MUTUALIS_ISSUER_URL: {{ include "mutualis.issuerUrl" $root | quote }}
  MUTUALIS_ISSUER: {{ include "mutualis.issuerUrl" $root | quote }}
  {{- with $root.Values.platform.jwksUrl }}
  MUTUALIS_JWKS_URL: {{ . | quote }}
  {{- end }}
  MUTUALIS_DEV_MODE: {{ $root.Values.platform.devMode | quote }}
  MUTUALIS_STREAM_REPLICAS: {{ $root.Values.platform.streamReplicas | quote }}
  MUTUALIS_DRAIN_TIMEOUT_S: {{ $root.Values.platform.drainTimeoutSeconds | quote }}
  MUTUALIS_LOG_FORMAT: {{ $root.Values.platform.logFormat | quote }}
  MUTUALIS_LOG_LEVEL: {{ $root.Values.platform.logLevel | quote }}
  MUTUALIS_TENANTS_FILE: /etc/mutualis/tenants/tenants.yaml
  {{- if $root.Values.natsAuth.credentials.enabled }}
  {{- if eq $root.Values.natsAuth.credentials.kind "nkey" }}
  MUTUALIS_NATS_NKEY_SEED_FILE: /etc/mutualis/nats-credentials/{{ .name }}.nk
  {{- else }}
  MUTUALIS_NATS_CREDENTIALS_FILE: /etc/mutualis/nats-credentials/{{ .name }}.creds
  {{- end }}
  {{- end }}
  {{- if $root.Values.natsAuth.tls.enabled }}
  MUTUALIS_NATS_TLS_CA_FILE: /etc/mutualis/nats-ca/{{ $root.Values.natsAuth.tls.key }}
  {{- end }}
  {{- if and $root.Values.pkcs11.enabled $svc.pkcs11 }}
  MUTUALIS_PKCS11_MODULE: {{ $root.Values.pkcs11.modulePath | quote }}
  {{- end }}
  {{- if $root.Values.otel.enabled }}
  OTEL_EXPORTER_OTLP_ENDPOINT: {{ $root.Values.otel.endpoint | quote }}
  OTEL_SERVICE_NAME: {{ .name | quote }}
  {{- else }}
  OTEL_SDK_DISABLED: "true"
  {{- end }}
  {{- range $key, $value := $svc.extraEnv }}
  {{ $key }}: {{ $value | toString | quote }}
  {{- end }}
  tenants.yaml: |
    {{- include "mutualis.tenantsFile" $root | nindent 4 }}
{{- end -}}

{{- /* ---------------------------------------------------------------- ServiceAccount */ -}}
{{- define "mutualis.service.serviceaccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "mutualis.service.fullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "mutualis.service.labels" . | nindent 4 }}
# Services never call the Kubernetes API.
automountServiceAccountToken: false
{{- end -}}

{{- /* ---------------------------------------------------------------- Service */ -}}
{{- define "mutualis.service.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "mutualis.service.fullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "mutualis.service.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  # Prefer an instance in the caller's own zone (datacenter-local traffic).
  trafficDistribution: PreferClose
  selector:
    {{- include "mutualis.service.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .svc.port }}
      targetPort: http
      protocol: TCP
{{- end -}}

{{- /* ---------------------------------------------------------------- Deployment */ -}}
{{- define "mutualis.service.deployment" -}}
{{- $root := .root -}}{{- $svc := .svc -}}{{- $name := .name -}}
{{- $grace := int $svc.terminationGracePeriodSeconds -}}
{{- $needed := add (int $root.Values.platform.drainTimeoutSeconds) (int $svc.preStopSleepSeconds) -}}
{{- if le $grace $needed -}}
{{- fail (printf "services.%s.terminationGracePeriodSeconds (%d) must exceed platform.drainTimeoutSeconds + preStopSleepSeconds (%d) so a NATS drain is never cut short" $name $grace $needed) -}}
{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "mutualis.service.fullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "mutualis.service.labels" . | nindent 4 }}
spec:
  {{- if not $svc.autoscaling.enabled }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "mutualis.service.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- include "mutualis.service.labels" . | nindent 8 }}
      annotations:
        # A changed setting or tenants list rolls the pods.
        checksum/config: {{ include "mutualis.service.configmap" . | sha256sum }}
        # For the in-cluster Prometheus (allowed in by the NetworkPolicy; never on the ingress).
        prometheus.io/scrape: "true"
        prometheus.io/path: /metrics
        prometheus.io/port: {{ $svc.port | quote }}
        {{- with $svc.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "mutualis.service.fullname" . }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $grace }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $svc.podSecurityContext | nindent 8 }}
      topologySpreadConstraints:
        # Every zone (datacenter) runs every service.
        - maxSkew: {{ $root.Values.zones.maxSkew }}
          topologyKey: {{ $root.Values.zones.topologyKey }}
          whenUnsatisfiable: {{ $root.Values.zones.whenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- include "mutualis.service.selectorLabels" . | nindent 14 }}
        # And within a zone, spread over nodes when possible.
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "mutualis.service.selectorLabels" . | nindent 14 }}
      {{- with $svc.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $name }}
          image: {{ include "mutualis.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          # The image's entry point is `mutualis serve`; the argument picks the service.
          args: [{{ $name | quote }}]
          ports:
            - name: http
              containerPort: {{ $svc.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "mutualis.service.fullname" . }}
          env:
            # Order matters: later values refer to earlier ones with $(NAME).
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
            - name: POD_NAMESPACE
              valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
            # The node's zone, copied onto the pod by Kubernetes' pod topology labels
            # (PodTopologyLabelsAdmission: alpha 1.33, beta 1.35).
            - name: MUTUALIS_DATACENTER
              valueFrom:
                fieldRef:
                  fieldPath: "metadata.labels['{{ $root.Values.zones.topologyKey }}']"
            {{- if $root.Values.otel.enabled }}
            - name: OTEL_RESOURCE_ATTRIBUTES
              value: "service.version={{ $root.Chart.AppVersion }},cloud.availability_zone=$(MUTUALIS_DATACENTER),k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),service.namespace=mutualis"
            {{- end }}
            {{- range $svc.secretEnv }}
            {{- $ref := index $root.Values.secrets .secret | default dict }}
            - name: {{ .name }}
              valueFrom:
                secretKeyRef:
                  name: {{ required (printf "secrets.%s.existingSecret is required by %s (%s): name a Secret that already exists in the namespace" .secret $name .name) $ref.existingSecret }}
                  key: {{ .key }}
            {{- end }}
          startupProbe:
            httpGet: {path: {{ $svc.probes.startup.path }}, port: http}
            periodSeconds: {{ $svc.probes.startup.periodSeconds }}
            timeoutSeconds: {{ $svc.probes.startup.timeoutSeconds }}
            failureThreshold: {{ $svc.probes.startup.failureThreshold }}
          livenessProbe:
            httpGet: {path: {{ $svc.probes.liveness.path }}, port: http}
            periodSeconds: {{ $svc.probes.liveness.periodSeconds }}
            timeoutSeconds: {{ $svc.probes.liveness.timeoutSeconds }}
            failureThreshold: {{ $svc.probes.liveness.failureThreshold }}
          readinessProbe:
            # Includes NATS quorum: a pod cut off from JetStream stops receiving traffic.
            httpGet: {path: {{ $svc.probes.readiness.path }}, port: http}
            periodSeconds: {{ $svc.probes.readiness.periodSeconds }}
            timeoutSeconds: {{ $svc.probes.readiness.timeoutSeconds }}
            failureThreshold: {{ $svc.probes.readiness.failureThreshold }}
          lifecycle:
            preStop:
              # Let endpoints drop the pod before SIGTERM starts the NATS drain.
              sleep: {seconds: {{ $svc.preStopSleepSeconds }}}
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          securityContext:
            {{- toYaml $svc.securityContext | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            - {name: tenants, mountPath: /etc/mutualis/tenants, readOnly: true}
            {{- if $root.Values.natsAuth.credentials.enabled }}
            - {name: nats-credentials, mountPath: /etc/mutualis/nats-credentials, readOnly: true}
            {{- end }}
            {{- if $root.Values.natsAuth.tls.enabled }}
            - {name: nats-ca, mountPath: /etc/mutualis/nats-ca, readOnly: true}
            {{- end }}
            {{- if and $root.Values.pkcs11.enabled $svc.pkcs11 }}
            - {name: pkcs11, mountPath: {{ $root.Values.pkcs11.mountPath }}, readOnly: true}
            {{- end }}
            {{- with $svc.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: {sizeLimit: {{ $svc.tmpSizeLimit }}}
        - name: tenants
          configMap:
            name: {{ include "mutualis.service.fullname" . }}
            items: [{key: tenants.yaml, path: tenants.yaml}]
        {{- if $root.Values.natsAuth.credentials.enabled }}
        - name: nats-credentials
          secret:
            secretName: {{ required "natsAuth.credentials.existingSecret is required when natsAuth.credentials.enabled" $root.Values.natsAuth.credentials.existingSecret }}
            defaultMode: 0440
            # Only this service's own identity is mounted, never its neighbours'.
            {{- $file := printf "%s.%s" $name (ternary "nk" "creds" (eq $root.Values.natsAuth.credentials.kind "nkey")) }}
            items: [{key: {{ $file }}, path: {{ $file }}}]
        {{- end }}
        {{- if $root.Values.natsAuth.tls.enabled }}
        - name: nats-ca
          secret:
            secretName: {{ required "natsAuth.tls.existingSecret is required when natsAuth.tls.enabled" $root.Values.natsAuth.tls.existingSecret }}
            defaultMode: 0444
            # Only the CA, even from a Secret that also holds a key (cert-manager's layout).
            items: [{key: {{ $root.Values.natsAuth.tls.key }}, path: {{ $root.Values.natsAuth.tls.key }}}]
        {{- end }}
        {{- if and $root.Values.pkcs11.enabled $svc.pkcs11 }}
        - name: pkcs11
          {{- toYaml $root.Values.pkcs11.volume | nindent 10 }}
        {{- end }}
        {{- with $svc.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end -}}

{{- /* ---------------------------------------------------------------- HPA */ -}}
{{- define "mutualis.service.hpa" -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "mutualis.service.fullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "mutualis.service.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "mutualis.service.fullname" . }}
  minReplicas: {{ .svc.autoscaling.minReplicas }}
  maxReplicas: {{ .svc.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .svc.autoscaling.targetCPUUtilizationPercentage }}
{{- end -}}

{{- /* ---------------------------------------------------------------- PDB */ -}}
{{- define "mutualis.service.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "mutualis.service.fullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "mutualis.service.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .svc.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "mutualis.service.selectorLabels" . | nindent 6 }}
{{- end -}}

{{- /* ---------------------------------------------------------------- NetworkPolicy */ -}}
{{- define "mutualis.service.networkpolicy" -}}
{{- $root := .root -}}{{- $svc := .svc -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "mutualis.service.fullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "mutualis.service.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "mutualis.service.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    # The other Mutualis services of this release (e.g. JWKS from identity).
    - from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/part-of: mutualis
              app.kubernetes.io/instance: {{ $root.Release.Name }}
      ports: [{port: http, protocol: TCP}]
    {{- if and $root.Values.ingress.enabled $svc.ingress.enabled }}
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $root.Values.ingress.controllerNamespace }}
      ports: [{port: http, protocol: TCP}]
    {{- end }}
    {{- with $root.Values.networkPolicy.metricsNamespace }}
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ . }}
      ports: [{port: http, protocol: TCP}]
    {{- end }}
  egress:
    # DNS.
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $root.Values.networkPolicy.dns.namespace }}
          podSelector:
            matchLabels:
              {{- toYaml $root.Values.networkPolicy.dns.podLabels | nindent 14 }}
      ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
    # NATS.
    {{- if $root.Values.nats.enabled }}
    - to:
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: nats
              app.kubernetes.io/instance: {{ $root.Release.Name }}
      ports: [{port: {{ $root.Values.nats.clientPort }}, protocol: TCP}]
    {{- else }}
    - ports: [{port: {{ $root.Values.externalNats.port }}, protocol: TCP}]
      {{- with $root.Values.externalNats.cidrs }}
      to:
        {{- range . }}
        - ipBlock: {cidr: {{ . }}}
        {{- end }}
      {{- end }}
    {{- end }}
    # The other Mutualis services (identity's JWKS, service-to-service APIs).
    - to:
        - podSelector:
            matchLabels:
              app.kubernetes.io/part-of: mutualis
              app.kubernetes.io/instance: {{ $root.Release.Name }}
      ports: [{port: http, protocol: TCP}]
    {{- if $root.Values.otel.enabled }}
    # The OpenTelemetry collector.
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $root.Values.otel.collector.namespace }}
          podSelector:
            matchLabels:
              {{- toYaml $root.Values.otel.collector.podLabels | nindent 14 }}
      ports: [{port: {{ $root.Values.otel.collector.port }}, protocol: TCP}]
    {{- end }}
    {{- with $svc.extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- /* ---------------------------------------------------------------- Ingress */ -}}
{{- define "mutualis.service.ingress" -}}
{{- $root := .root -}}{{- $svc := .svc -}}
{{- include "mutualis.service.ingressPaths" . -}}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "mutualis.service.fullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "mutualis.service.labels" . | nindent 4 }}
  {{- with $root.Values.ingress.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $root.Values.ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  tls:
    - hosts: [{{ required (printf "services.%s.ingress.host is required when its ingress is enabled" .name) $svc.ingress.host | quote }}]
      secretName: {{ required "ingress.tlsSecretName is required: the public endpoints are served over TLS only" $root.Values.ingress.tlsSecretName }}
  rules:
    - host: {{ $svc.ingress.host | quote }}
      http:
        paths:
          {{- range $svc.ingress.paths }}
          - path: {{ .path }}
            pathType: {{ .pathType | default "Prefix" }}
            backend:
              service:
                name: {{ include "mutualis.service.fullname" $ }}
                port: {name: http}
          {{- end }}
{{- end -}}

{{- /*
The public paths of one service's Ingress. Only what the service's users call goes through the
ingress (identity's login and OpenID Connect endpoints, the APIs); /metrics stays for the
in-cluster Prometheus (NetworkPolicy), the probes for the kubelet, and the API description
pages (/docs, /redoc, /openapi.json) are not published. A path that would reach one of them
is refused, whatever its pathType (Prefix matches whole path elements: /me never reaches
/metrics, / reaches everything).
*/ -}}
{{- define "mutualis.service.ingressPaths" -}}
{{- $name := .name -}}
{{- if not .svc.ingress.paths -}}
{{- fail (printf "services.%s.ingress.paths is empty: list the public paths of %s (never /)" $name $name) -}}
{{- end -}}
{{- range .svc.ingress.paths -}}
{{- $raw := .path -}}
{{- $path := trimSuffix "/" $raw -}}
{{- range $internal := list "/metrics" "/docs" "/redoc" "/openapi.json" "/healthz" "/readyz" -}}
{{- if or (eq $path "") (eq $path $internal) (hasPrefix (printf "%s/" $path) $internal) (hasPrefix (printf "%s/" $internal) $path) -}}
{{- fail (printf "services.%s.ingress.paths: %q would publish %s, which stays inside the cluster" $name $raw $internal) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
