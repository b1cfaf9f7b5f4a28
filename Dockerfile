# The domicile router. Shards, catalog, Redis and S3 are separate services (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY client client
COPY router router
COPY shards shards
COPY audit audit
COPY migrations migrations
RUN pip install --no-cache-dir -c constraints.txt . && useradd --system --home /var/lib/domicile domicile \
    && mkdir -p /var/lib/domicile && chown domicile /var/lib/domicile
USER domicile
ENV DOMICILE_DATA_DIR=/var/lib/domicile
EXPOSE 8000
CMD ["domicile", "serve", "--host", "0.0.0.0", "--port", "8000"]
