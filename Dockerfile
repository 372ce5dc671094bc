FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 DATA_DIR=/app/var
COPY pyproject.toml README.md constraints.txt ./
COPY conversations conversations
COPY memory memory
COPY agent agent
COPY channels channels
COPY workers workers
COPY scheduler scheduler
COPY api api
COPY cli cli
COPY dormouse dormouse
COPY examples examples
RUN pip install --no-cache-dir -c constraints.txt . && useradd --create-home dormouse && mkdir -p var && chown dormouse var
USER dormouse
CMD ["dormouse", "--help"]
