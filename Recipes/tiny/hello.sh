#!/bin/sh
echo "tiny says: $(cat /opt/tiny/greeting.txt)"
