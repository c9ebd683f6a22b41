/* Cost of first-touch page faults on this machine: touches one byte per 4 KiB page of a fresh
 * 64 MiB anonymous mapping (3 times with 4 KiB pages, 3 times with MADV_HUGEPAGE), then memsets
 * it. docs/PERFORMANCE.md quotes its output (why writing diagnostics costs what it does).
 *
 *   gcc -O2 -o /tmp/page_fault_cost scripts/page_fault_cost.c && /tmp/page_fault_cost
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int c,char**v){size_t n=64<<20; for(int huge=0;huge<2;huge++) for(int r=0;r<3;r++){
 char*p=mmap(0,n+(2<<20),PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
 char*q=(char*)(((size_t)p+(2<<20)-1)&~((size_t)(2<<20)-1));
 if(huge) madvise(q,n,MADV_HUGEPAGE);
 double t=now(); for(size_t i=0;i<n;i+=4096) q[i]=1; double a=now()-t;
 t=now(); memset(q,2,n); double b=now()-t;
 printf("huge=%d fault %.3f us/4KB (%.1f ms per 10MB), memset after %.3f ms/64MB\n",huge,a/(n/4096)*1e6,a/(n/4096)*1e6*2560/1000,b*1e3);
 munmap(p,n+(2<<20));}}
